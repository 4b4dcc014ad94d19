#include "prism/spikes/eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "prism/spikes/alerts.h"

namespace prism::spikes {

namespace {

double wall_ns() {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count());
}

// Iterations slowed by ambient interference (measured runs; none for the simulator).
std::vector<uint8_t> ambient_of(const LabelledRun& run, const ScoringOptions& options) {
  if (run.off_cpu_ns.empty()) return {};
  std::vector<double> durations;
  durations.reserve(run.series.iterations.size());
  for (const IterationRecord& r : run.series.iterations)
    durations.push_back(static_cast<double>(r.duration_ns()));
  return ambient_mask(run.off_cpu_ns, durations, options);
}

Score score_run(const LabelledRun& run, const DetectionResult& r, const ScoringOptions& options,
                bool with_faults) {
  static const std::vector<FaultWindow> none;
  return score(run.labels, r.flagged, with_faults ? run.faults : none, r.episodes, options,
               ambient_of(run, options));
}

DetectorConfig config_for(const EvalOptions& options, const LabelledRun& run) {
  DetectorConfig c = options.detector;
  c.stages = run.series.stages;
  return c;
}

}  // namespace

DetectionResult run_detector(Detector& detector, const LabelledRun& run,
                             const std::vector<double>& handover_delay_ns) {
  DetectionResult r;
  const auto& its = run.series.iterations;
  r.flagged.assign(its.size(), 0);
  std::map<uint64_t, size_t> episode_of;  // alert id -> episode
  std::map<uint64_t, size_t> position;    // iteration index -> position in the run
  auto collect = [&](double handed_ns, size_t pos) {
    while (detector.has_alert()) {
      SpikeAlert a = detector.take_alert();
      // An alert counts as raised once its JSON line exists.
      const std::string line = spike_alert_json(a).dump();
      const double latency =
          wall_ns() - handed_ns + (pos < handover_delay_ns.size() ? handover_delay_ns[pos] : 0.0);
      auto first = position.find(a.first_iteration);
      auto last = position.find(a.last_iteration);
      const uint64_t f = first == position.end() ? 0 : first->second;
      const uint64_t l = last == position.end() ? f : last->second;
      if (a.phase == AlertPhase::kOpen) {
        episode_of[a.alert_id] = r.episodes.size();
        r.episodes.push_back(AlertEpisode{f, f, line.empty() ? 0 : latency});
      } else if (auto e = episode_of.find(a.alert_id); e != episode_of.end()) {
        r.episodes[e->second].last = l;
      }
      r.alerts.push_back(std::move(a));
    }
  };
  double busy_ns = 0;
  for (size_t i = 0; i < its.size(); ++i) {
    position[its[i].index] = i;
    const double t0 = wall_ns();
    const IterationVerdict& v = detector.observe(its[i]);
    busy_ns += wall_ns() - t0;
    r.flagged[i] = v.anomalous ? 1 : 0;
    collect(t0, i);
  }
  detector.flush();
  collect(wall_ns(), its.size());
  r.cost_ns_per_iteration = its.empty() ? 0.0 : busy_ns / static_cast<double>(its.size());
  return r;
}

Detector train_detector(const RunSource& source, const EvalOptions& options, double threshold) {
  std::optional<Detector> d;
  for (uint64_t seed : options.train_seeds) {
    const LabelledRun run = source(seed, false);
    if (!d) d.emplace(config_for(options, run));
    for (const IterationRecord& it : run.series.iterations) d->observe(it);
    d->reset_episodes();
  }
  if (!d) throw std::invalid_argument("spikes eval: no training seeds");
  d->set_threshold(threshold);
  return *d;
}

EvalReport evaluate(const RunSource& source, const EvalOptions& options) {
  if (options.train_seeds.empty() || options.eval_seeds.empty())
    throw std::invalid_argument("spikes eval: both training and evaluation seeds are needed");
  for (uint64_t s : options.eval_seeds)
    if (std::find(options.train_seeds.begin(), options.train_seeds.end(), s) !=
        options.train_seeds.end())
      throw std::invalid_argument(
          fmt::format("spikes eval: seed {} is both a training and an evaluation seed", s));
  if (options.thresholds.empty())
    throw std::invalid_argument("spikes eval: no thresholds to calibrate");

  EvalReport report;
  // Training: the model learns on pure-variation runs of the training seeds;
  // the threshold is chosen on their fault and pure-variation runs.
  std::vector<LabelledRun> train_clean, train_faults;
  std::optional<Detector> trained;
  for (uint64_t seed : options.train_seeds) {
    train_clean.push_back(source(seed, false));
    train_faults.push_back(source(seed, true));
    report.source = train_clean.back().source;
    if (!trained) trained.emplace(config_for(options, train_clean.back()));
    for (const IterationRecord& it : train_clean.back().series.iterations) trained->observe(it);
    trained->reset_episodes();
    report.train_iterations +=
        train_clean.back().series.iterations.size() + train_faults.back().series.iterations.size();
  }
  // Calibration grid: threshold x smallest absolute excess. Best training F1
  // among the settings with at most the allowed false alarms; when none is
  // eligible, the one with the fewest false alarms (then the best F1).
  double best_f1 = -1, fewest_alarms = -1, fewest_f1 = -1;
  bool have_eligible = false;
  const std::vector<double> min_excess =
      options.min_excess_ns.empty() ? std::vector<double>{0.0} : options.min_excess_ns;
  report.threshold = options.thresholds.back();
  const std::vector<double> sustained =
      options.sustained.empty() ? std::vector<double>{0.0} : options.sustained;
  report.min_excess_ns = min_excess.back();
  const std::vector<double> stage_ks =
      options.stage_thresholds.empty() ? std::vector<double>{0.0} : options.stage_thresholds;
  report.sustained = sustained.front();
  report.stage_threshold = stage_ks.front();
  for (double st : stage_ks) {
    for (double l : sustained) {
      for (double m : min_excess) {
        for (double k : options.thresholds) {
          Detector tuned = *trained;
          tuned.set_threshold(k);
          tuned.set_min_excess_ns(m);
          tuned.set_sustained_threshold(l);
          tuned.set_stage_threshold(st);
          Score faults, clean;
          for (size_t i = 0; i < train_faults.size(); ++i) {
            Detector d = tuned;  // every run starts from the same trained state
            const DetectionResult r =
                run_detector(d, train_faults[i], train_faults[i].handover_delay_ns);
            faults.merge(score_run(train_faults[i], r, options.scoring, true));
            Detector c = tuned;
            const DetectionResult rc =
                run_detector(c, train_clean[i], train_clean[i].handover_delay_ns);
            clean.merge(score_run(train_clean[i], rc, options.scoring, false));
          }
          Score all = faults;
          all.merge(clean);
          const bool ok = all.false_alarms_per_10k <= options.max_false_alarms_per_10k;
          report.calibration.push_back({{"threshold", k},
                                        {"min_excess_ns", m},
                                        {"sustained", l},
                                        {"stage_threshold", st},
                                        {"f1", faults.f1},
                                        {"precision", faults.precision},
                                        {"recall", faults.recall},
                                        {"false_alarms_per_10k", all.false_alarms_per_10k},
                                        {"eligible", ok}});
          if (ok && faults.f1 > best_f1 + 1e-12) {
            have_eligible = true;
            best_f1 = faults.f1;
            report.threshold = k;
            report.min_excess_ns = m;
            report.sustained = l;
            report.stage_threshold = st;
          }
          if (!have_eligible &&
              (fewest_alarms < 0 || all.false_alarms_per_10k < fewest_alarms - 1e-12 ||
               (std::fabs(all.false_alarms_per_10k - fewest_alarms) <= 1e-12 &&
                faults.f1 > fewest_f1))) {
            fewest_alarms = all.false_alarms_per_10k;
            fewest_f1 = faults.f1;
            report.threshold = k;
            report.min_excess_ns = m;
            report.sustained = l;
            report.stage_threshold = st;
          }
        }
      }
    }
  }
  report.calibrated = have_eligible;
  trained->set_sustained_threshold(report.sustained);
  trained->set_stage_threshold(report.stage_threshold);
  trained->set_min_excess_ns(report.min_excess_ns);
  trained->set_threshold(report.threshold);

  // Held-out evaluation.
  double cost_sum = 0;
  int cost_runs = 0;
  for (uint64_t seed : options.eval_seeds) {
    const LabelledRun run = source(seed, true);
    Detector d = *trained;
    const DetectionResult r = run_detector(d, run, run.handover_delay_ns);
    report.held_out.merge(score_run(run, r, options.scoring, true));
    report.eval_iterations += run.series.iterations.size();
    cost_sum += r.cost_ns_per_iteration;
    ++cost_runs;
    for (const FaultWindow& w : run.faults) {
      KindScore& ks = report.per_kind[w.kind];
      ++ks.windows;
      for (uint64_t i = w.first; i <= w.last && i < r.flagged.size(); ++i) {
        ++ks.window_iterations;
        if (i < run.labels.size() && run.labels[i]) (r.flagged[i] ? ks.tp : ks.fn)++;
      }
      const auto hit = std::find_if(r.alerts.begin(), r.alerts.end(), [&](const SpikeAlert& a) {
        return a.phase == AlertPhase::kClosed &&
               a.first_iteration <= w.last + options.scoring.tolerance &&
               a.last_iteration >= w.first;
      });
      if (hit != r.alerts.end()) {
        ++ks.detected;
        if (!w.stage.empty() &&
            std::find(hit->blamed.begin(), hit->blamed.end(), w.stage) != hit->blamed.end())
          ++ks.blamed_right;
      }
    }
    if (options.clean_runs) {
      const LabelledRun clean = source(seed, false);
      Detector c = *trained;
      const DetectionResult rc = run_detector(c, clean, clean.handover_delay_ns);
      report.clean.merge(score_run(clean, rc, options.scoring, false));
      report.ambient.add(clean, options.scoring);
      report.eval_iterations += clean.series.iterations.size();
      cost_sum += rc.cost_ns_per_iteration;
      ++cost_runs;
    }
  }
  report.cost_ns_per_iteration = cost_runs == 0 ? 0.0 : cost_sum / cost_runs;
  return report;
}

void AmbientStats::add(const LabelledRun& run, const ScoringOptions& options) {
  if (run.run_delay_ns.empty() && run.off_cpu_ns.empty()) return;  // not measured (simulator)
  const auto& its = run.series.iterations;
  for (size_t i = options.scored_from; i < its.size(); ++i) {
    ++iterations;
    if (i < run.run_delay_ns.size() && run.run_delay_ns[i] > 0) {
      ++waited;
      if (run.run_delay_ns[i] > 20'000) ++waited_20us;
      run_delay_sum_ns += run.run_delay_ns[i];
    }
    if (i < run.off_cpu_ns.size()) off_cpu_sum_ns += run.off_cpu_ns[i];
  }
}

nlohmann::json AmbientStats::to_json() const {
  const double n = iterations == 0 ? 1.0 : static_cast<double>(iterations);
  return {{"iterations", iterations},
          {"run_queue_wait_share", static_cast<double>(waited) / n},
          {"run_queue_wait_over_20us_share", static_cast<double>(waited_20us) / n},
          {"run_queue_wait_mean_ns", run_delay_sum_ns / n},
          {"off_cpu_mean_ns", off_cpu_sum_ns / n}};
}

nlohmann::json EvalReport::to_json() const {
  nlohmann::json j;
  j["source"] = source;
  j["threshold"] = threshold;
  j["min_excess_ns"] = min_excess_ns;
  j["sustained"] = sustained;
  j["stage_threshold"] = stage_threshold;
  j["calibrated_within_false_alarm_limit"] = calibrated;
  j["calibration"] = calibration;
  j["held_out"] = held_out.to_json();
  j["pure_variation"] = clean.to_json();
  j["detector_cost_ns_per_iteration"] = cost_ns_per_iteration;
  j["train_iterations"] = train_iterations;
  j["ambient"] = ambient.to_json();
  j["eval_iterations"] = eval_iterations;
  auto& kinds = j["per_kind"] = nlohmann::json::object();
  for (const auto& [kind, ks] : per_kind)
    kinds[kind] = {{"windows", ks.windows},
                   {"window_iterations", ks.window_iterations},
                   {"detected", ks.detected},
                   {"tp", ks.tp},
                   {"fn", ks.fn},
                   {"blamed_right", ks.blamed_right}};
  return j;
}

std::string EvalReport::to_text() const {
  std::string out = fmt::format("spike detection evaluation ({})\n", source);
  out += fmt::format(
      "  calibrated threshold      {:.1f}, smallest excess {:.0f} us, stage bound {:.0f}, "
      "sustained level {:.1f} (training: {} iterations){}\n",
      threshold, min_excess_ns / 1e3, stage_threshold, sustained, train_iterations,
      calibrated ? "" : "; no setting met the false-alarm limit on training: fewest alarms used");
  out += fmt::format("  held-out iterations       {}\n", eval_iterations);
  const Score& h = held_out;
  out += fmt::format(
      "  iteration level           precision {:.4f}  recall {:.4f}  F1 {:.4f}  (tp {} fp {} fn "
      "{})\n",
      h.precision, h.recall, h.f1, h.tp, h.fp, h.fn);
  out += fmt::format(
      "  fault windows detected    {}/{}  onset delay mean {:.2f} max {:.0f} iterations\n",
      h.windows_detected, h.windows, h.onset_delay_mean, h.onset_delay_max);
  out += fmt::format(
      "  alert latency             mean {:.1f} us  p99 {:.1f} us  max {:.1f} us (after the "
      "iteration ended)\n",
      h.latency_mean_ns / 1e3, h.latency_p99_ns / 1e3, h.latency_max_ns / 1e3);
  out += fmt::format(
      "  false alarms (fault runs) {} alerts outside faults, {:.2f} per 10k clean iterations\n",
      h.false_alarms, h.false_alarms_per_10k);
  out += fmt::format(
      "  pure workload variation   {} alerts in {} iterations: {:.2f} per 10k ({:.2f} flagged "
      "iterations per 10k)\n",
      clean.false_alarms, clean.clean_iterations, clean.false_alarms_per_10k,
      clean.flagged_clean_per_10k);
  if (h.ambient_iterations + clean.ambient_iterations > 0) {
    const uint64_t ambient = h.ambient_iterations + clean.ambient_iterations;
    const uint64_t outside = h.raw_clean_iterations + clean.raw_clean_iterations;
    out += fmt::format(
        "  ambient interference      {} of {} iterations outside faults ({:.2f} %) were off CPU "
        "(another process ran): not scored; {} alerts on them\n",
        ambient, outside, outside == 0 ? 0.0 : 100.0 * ambient / outside,
        h.ambient_alerts + clean.ambient_alerts);
    out += fmt::format(
        "  counting those as wrong   held-out precision {:.4f} F1 {:.4f}; pure variation {:.2f} "
        "false alarms per 10k\n",
        h.raw_precision, h.raw_f1, clean.raw_false_alarms_per_10k);
  }
  if (ambient.iterations > 0)
    out += fmt::format(
        "  ambient (pure variation)  run-queue wait in {:.2f} % of iterations (> 20 us: {:.2f} "
        "%), mean {:.1f} us per iteration; off CPU mean {:.1f} us\n",
        100.0 * static_cast<double>(ambient.waited) / static_cast<double>(ambient.iterations),
        100.0 * static_cast<double>(ambient.waited_20us) / static_cast<double>(ambient.iterations),
        ambient.run_delay_sum_ns / 1e3 / static_cast<double>(ambient.iterations),
        ambient.off_cpu_sum_ns / 1e3 / static_cast<double>(ambient.iterations));
  out += fmt::format("  detector cost             {:.0f} ns per iteration (in-run wall clock)\n",
                     cost_ns_per_iteration);
  out +=
      "  per fault kind            windows detected  faulty/window iterations  iteration recall  "
      "blamed right\n";
  for (const auto& [kind, ks] : per_kind)
    out += fmt::format(
        "    {:<22}  {:>3}/{:<3}    {:>6}/{:<6}                {:.4f}           {}\n", kind,
        ks.detected, ks.windows, ks.tp + ks.fn, ks.window_iterations, recall_of(ks.tp, ks.fn),
        kind == "stage_delay" ? fmt::format("{}/{}", ks.blamed_right, ks.detected) : "-");
  return out;
}

OfflineDetection detect_series(const LabelledRun& run, DetectorConfig config, AlertSink& sink,
                               bool include_window) {
  config.stages = run.series.stages;
  Detector detector(config);
  OfflineDetection out;
  std::vector<uint8_t> flagged;
  std::vector<AlertEpisode> episodes;
  std::map<uint64_t, size_t> position;
  std::map<uint64_t, size_t> episode_of;
  auto drain = [&] {
    while (detector.has_alert()) {
      const SpikeAlert a = detector.take_alert();
      sink.emit(spike_alert_json(a, 0, include_window));
      const auto f = position.find(a.first_iteration);
      const auto l = position.find(a.last_iteration);
      const size_t fp = f == position.end() ? 0 : f->second;
      const size_t lp = l == position.end() ? fp : l->second;
      if (a.phase == AlertPhase::kOpen) {
        episode_of[a.alert_id] = episodes.size();
        episodes.push_back(AlertEpisode{fp, fp, 0});
      } else if (auto e = episode_of.find(a.alert_id); e != episode_of.end()) {
        episodes[e->second].last = lp;
      }
    }
  };
  for (size_t i = 0; i < run.series.iterations.size(); ++i) {
    position[run.series.iterations[i].index] = i;
    const IterationVerdict& v = detector.observe(run.series.iterations[i]);
    flagged.push_back(v.anomalous ? 1 : 0);
    out.anomalous += v.anomalous ? 1 : 0;
    drain();
  }
  detector.flush();
  drain();
  out.iterations = run.series.iterations.size();
  out.alerts = episodes.size();
  out.labelled =
      std::any_of(run.labels.begin(), run.labels.end(), [](uint8_t l) { return l != 0; });
  if (out.labelled && run.labels.size() == flagged.size()) {
    ScoringOptions so;
    so.scored_from = config.warmup;
    out.score = score(run.labels, flagged, run.faults, episodes, so, ambient_of(run, so));
  }
  return out;
}

std::vector<size_t> pick_stages(const std::vector<double>& total_ns_per_stage) {
  std::vector<size_t> order(total_ns_per_stage.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return total_ns_per_stage[a] > total_ns_per_stage[b];
  });
  if (order.size() > static_cast<size_t>(kMaxStages)) order.resize(static_cast<size_t>(kMaxStages));
  std::sort(order.begin(), order.end());
  return order;
}

RunSource simulator_source(SimulatorConfig base) {
  return [base](uint64_t seed, bool faults) {
    SimulatorConfig c = base;
    c.seed = seed;
    c.faults = faults;
    return simulate(c);
  };
}

}  // namespace prism::spikes
