#include "prism/spikes/simulator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <optional>
#include <random>
#include <stdexcept>

namespace prism::spikes {

namespace {

constexpr int kSchedule = 0, kAttention = 1, kMlp = 2, kForwardRest = 3, kSample = 4,
              kDetokenize = 5, kStages = 6;

// Unmodelled but legitimate: prefill attention grows with chunk x prefix,
// which no per-iteration feature captures exactly (ns per query-key pair).
constexpr double kPrefillQuadraticNs = 0.01;

struct SimRequest {
  int prompt = 0;
  int computed = 0;  // prompt tokens whose KV exists
  int output = 0;    // tokens to generate
  int generated = 0;
};

// A phase of the request stream: how fast requests come and how long they are.
struct Phase {
  double rate;           // requests per second
  double prompt_median;  // lognormal median
  double prompt_sigma;
  int prompt_min, prompt_max;
  int output_min, output_max;
};

const Phase kPhases[] = {
    {1.0, 600, 0.8, 16, 4000, 32, 400},         // steady mixed traffic (rate scaled by base)
    {3.0, 3000, 0.4, 1500, 8000, 16, 200},      // burst of long prompts
    {0.12, 20000, 0.3, 12000, 32000, 64, 256},  // long-context arrivals
    {0.15, 200, 0.5, 16, 800, 16, 128},         // quiet: small batches
    {2.5, 150, 0.5, 16, 600, 200, 800},         // many short chats: batch-size swing up
};
constexpr int kPhaseCount = static_cast<int>(sizeof(kPhases) / sizeof(kPhases[0]));

const char* kFaultKinds[] = {"cpu_hog", "membw_hog", "stage_delay", "deschedule", "freq_cap"};

struct ActiveFault {
  FaultWindow window;
  int kind = 0;
  std::array<double, kStages> mult{};
  int stage = 0;
  double delay_lo = 0, delay_hi = 0;
};

}  // namespace

const std::vector<std::string>& simulator_stages() {
  static const std::vector<std::string> names{"schedule",     "attention", "mlp",
                                              "forward_rest", "sample",    "detokenize"};
  return names;
}

const std::vector<StageCost>& simulator_costs() {
  // ns: c0, per prefill token, per decode sequence, per context token, per batch sequence.
  static const std::vector<StageCost> costs{
      {15000, 0, 0, 0, 400},      // schedule
      {30000, 300, 1500, 15, 0},  // attention
      {60000, 2500, 2500, 0, 0},  // mlp
      {40000, 50, 4000, 0, 500},  // forward_rest (embedding, norms, lm head)
      {8000, 0, 3000, 0, 0},      // sample
      {4000, 0, 800, 0, 0},       // detokenize
  };
  return costs;
}

LabelledRun simulate(const SimulatorConfig& config) {
  if (config.token_budget < 1 || config.max_seqs < 1)
    throw std::invalid_argument("simulator: token_budget and max_seqs must be >= 1");
  if (config.max_fault_len < config.min_fault_len || config.min_fault_len == 0)
    throw std::invalid_argument("simulator: fault lengths must satisfy 0 < min <= max");
  std::mt19937_64 rng(config.seed * 0x9E3779B97F4A7C15ULL + 17);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * unit(rng); };
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::exponential_distribution<double> expo(1.0);

  LabelledRun run;
  run.source = "simulator";
  run.series.stages = simulator_stages();
  run.series.iterations.reserve(config.iterations);
  const auto& costs = simulator_costs();

  std::deque<SimRequest> waiting;
  std::vector<SimRequest> running;
  double now_ns = 0;
  double next_arrival_ns = 0;
  int phase = 0;
  uint64_t phase_left = 500;

  // Fault schedule.
  std::optional<ActiveFault> fault;
  uint64_t next_fault =
      config.fault_free_prefix + static_cast<uint64_t>(expo(rng) * config.mean_fault_gap);

  for (uint64_t it = 0; it < config.iterations; ++it) {
    if (phase_left-- == 0) {
      phase = static_cast<int>(unit(rng) * kPhaseCount) % kPhaseCount;
      phase_left = static_cast<uint64_t>(uniform(200, 2000));
    }
    const Phase& ph = kPhases[phase];
    const double rate = config.base_arrival_rate * ph.rate;
    while (next_arrival_ns <= now_ns) {
      SimRequest r;
      const double p = ph.prompt_median * std::exp(ph.prompt_sigma * gauss(rng));
      r.prompt = std::clamp(static_cast<int>(p), ph.prompt_min, ph.prompt_max);
      r.output = static_cast<int>(uniform(ph.output_min, ph.output_max + 1));
      if (waiting.size() < 512) waiting.push_back(r);
      next_arrival_ns += 1e9 * expo(rng) / rate;
    }

    // Schedule: running sequences first (decodes, then unfinished prefills), then admissions.
    IterationFeatures f;
    double quadratic = 0;
    int budget = config.token_budget;
    std::vector<std::pair<size_t, int>> chunks;  // running index, tokens
    for (size_t i = 0; i < running.size() && budget > 0; ++i) {
      SimRequest& r = running[i];
      if (r.computed >= r.prompt) {
        chunks.push_back({i, 1});
        f.decode_seqs += 1;
        f.context_tokens += r.prompt + r.generated;
        --budget;
      }
    }
    for (size_t i = 0; i < running.size() && budget > 0; ++i) {
      SimRequest& r = running[i];
      if (r.computed < r.prompt) {
        const int n = std::min(budget, r.prompt - r.computed);
        chunks.push_back({i, n});
        f.prefill_tokens += n;
        f.context_tokens += r.computed + n;
        quadratic += static_cast<double>(n) * (r.computed + n / 2.0);
        budget -= n;
      }
    }
    while (budget > 0 && !waiting.empty() && static_cast<int>(running.size()) < config.max_seqs) {
      running.push_back(waiting.front());
      waiting.pop_front();
      SimRequest& r = running.back();
      const int n = std::min(budget, r.prompt);
      chunks.push_back({running.size() - 1, n});
      f.prefill_tokens += n;
      f.context_tokens += n;
      quadratic += static_cast<double>(n) * (n / 2.0);
      budget -= n;
    }
    f.batch_size = static_cast<double>(chunks.size());
    if (chunks.empty()) {
      // Idle: an engine does not step without work; wait for the next arrival.
      now_ns = std::max(now_ns, next_arrival_ns);
      --it;
      continue;
    }

    // Faults.
    if (config.faults && !fault && it >= next_fault) {
      ActiveFault a;
      a.kind = static_cast<int>(unit(rng) * 5) % 5;
      const uint64_t len =
          config.min_fault_len +
          static_cast<uint64_t>(
              unit(rng) * static_cast<double>(config.max_fault_len - config.min_fault_len + 1));
      a.window =
          FaultWindow{it, std::min(it + len - 1, config.iterations - 1), kFaultKinds[a.kind], ""};
      a.mult.fill(1.0);
      switch (a.kind) {
        case 0: {  // competing CPU-bound process: host stages suffer most
          const double host = uniform(1.6, 2.5), compute = uniform(1.25, 1.5);
          for (int s : {kSchedule, kForwardRest, kSample, kDetokenize})
            a.mult[static_cast<size_t>(s)] = host;
          a.mult[kAttention] = a.mult[kMlp] = compute;
          break;
        }
        case 1:  // memory-bandwidth hog: the memory-bound stages
          a.mult[kAttention] = uniform(1.6, 2.4);
          a.mult[kMlp] = uniform(1.3, 1.7);
          a.mult[kForwardRest] = 1.3;
          break;
        case 2:  // one stage slowed by an injected delay
          a.stage = static_cast<int>(unit(rng) * kStages) % kStages;
          a.window.stage = simulator_stages()[static_cast<size_t>(a.stage)];
          a.delay_lo = a.delay_hi = uniform(0.6e6, 3e6);
          break;
        case 3:  // descheduled thread: a sleep somewhere in each iteration
          a.delay_lo = 1e6;
          a.delay_hi = 8e6;
          break;
        default:  // frequency-capped core
          a.mult.fill(uniform(1.4, 1.8));
          break;
      }
      for (double& m : a.mult) m = 1.0 + config.fault_scale * (m - 1.0);
      a.delay_lo *= config.fault_scale;
      a.delay_hi *= config.fault_scale;
      fault = a;
      run.faults.push_back(a.window);
    }

    // Latency from the true cost model, noise and the fault.
    IterationRecord rec;
    rec.index = it;
    rec.features = f;
    const double common = std::exp(config.iteration_noise * gauss(rng));
    double total = 0;
    for (int s = 0; s < kStages; ++s) {
      const size_t i = static_cast<size_t>(s);
      double ns = costs[i].at(f);
      if (s == kAttention) ns += kPrefillQuadraticNs * quadratic;
      ns *= common * std::exp(config.stage_noise * gauss(rng));
      if (fault) ns *= fault->mult[i];
      rec.stage_ns[i] = ns;
    }
    if (fault && fault->kind == 2)
      rec.stage_ns[static_cast<size_t>(fault->stage)] += fault->delay_lo;
    if (fault && fault->kind == 3) {
      const size_t s = static_cast<size_t>(unit(rng) * kStages) % kStages;
      rec.stage_ns[s] += uniform(fault->delay_lo, fault->delay_hi);
    }
    for (int s = 0; s < kStages; ++s) total += rec.stage_ns[static_cast<size_t>(s)];
    const double gap = 20000 * std::exp(0.1 * gauss(rng));  // host loop between iterations
    rec.start_ns = static_cast<uint64_t>(now_ns + gap);
    rec.end_ns = rec.start_ns + static_cast<uint64_t>(std::llround(total));
    now_ns = static_cast<double>(rec.end_ns);
    run.series.iterations.push_back(rec);
    if (fault && it >= fault->window.last) {
      fault.reset();
      next_fault = it + 1 + static_cast<uint64_t>(expo(rng) * config.mean_fault_gap) + 50;
    }

    // Progress: prefills advance, decodes and completed prefills sample a token.
    for (const auto& [i, n] : chunks) {
      SimRequest& r = running[i];
      if (r.computed < r.prompt) {
        r.computed += n;
        if (r.computed >= r.prompt) ++r.generated;
      } else {
        ++r.generated;
      }
    }
    std::erase_if(running, [](const SimRequest& r) { return r.generated >= r.output; });
  }
  run.labels = labels_from_windows(run.faults, config.iterations);
  return run;
}

}  // namespace prism::spikes
