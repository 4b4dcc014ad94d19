#include "prism/engine/scheduler.h"

#include <algorithm>
#include <span>
#include <stdexcept>

namespace prism::engine {

Scheduler::Scheduler(const SchedulerOptions& options, BlockManager& blocks, int max_context)
    : options_(options), blocks_(blocks), max_context_(max_context) {
  if (options_.max_num_batched_tokens <= 0)
    throw std::invalid_argument("scheduler: max_num_batched_tokens must be positive");
  if (options_.max_num_seqs <= 0)
    throw std::invalid_argument("scheduler: max_num_seqs must be positive");
}

void Scheduler::add(Sequence* seq) {
  waiting_.push_back(seq);
}

void Scheduler::remove(Sequence* seq) {
  const auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  const auto w = std::find(waiting_.begin(), waiting_.end(), seq);
  if (w != waiting_.end()) waiting_.erase(w);
  release_blocks(seq);
}

void Scheduler::release_blocks(Sequence* seq) {
  // Tail first: the LRU then evicts a prefix's last blocks before its first.
  for (auto it = seq->blocks.rbegin(); it != seq->blocks.rend(); ++it) blocks_.release(*it);
  seq->blocks.clear();
  seq->block_hashes.clear();
  seq->num_computed = 0;
}

bool Scheduler::ensure_blocks(Sequence* seq, int tokens) {
  const int bs = blocks_.block_size();
  const auto needed = static_cast<std::size_t>((tokens + bs - 1) / bs);
  while (seq->blocks.size() < needed) {
    const int b = blocks_.allocate();
    if (b < 0) return false;
    seq->blocks.push_back(b);
  }
  return true;
}

void Scheduler::preempt(Sequence* seq) {
  const auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  release_blocks(seq);
  ++seq->preemptions;
  ++preemptions_;
  waiting_.push_front(seq);
}

void Scheduler::schedule_running(SchedulerOutput& out, int& budget) {
  std::size_t i = 0;
  while (i < running_.size() && budget > 0) {
    Sequence* seq = running_[i];
    const int remaining = static_cast<int>(seq->tokens.size()) - seq->num_computed;
    const int n = std::min(remaining, budget);
    bool ok = ensure_blocks(seq, seq->num_computed + n);
    bool self_preempted = false;
    while (!ok && options_.preemption) {
      Sequence* victim = running_.back();
      preempt(victim);
      out.preempted.push_back(victim);
      if (victim == seq) {
        self_preempted = true;
        break;
      }
      ok = ensure_blocks(seq, seq->num_computed + n);
    }
    if (self_preempted) continue;  // running_ shrank; index i is past the end or the next one
    if (!ok) {
      ++i;
      continue;
    }
    out.chunks.push_back({seq, n});
    budget -= n;
    ++i;
  }
}

bool Scheduler::admit_head(SchedulerOutput& out, int& budget) {
  Sequence* seq = waiting_.front();
  const int bs = blocks_.block_size();
  const auto all = std::span<const std::int32_t>(seq->tokens);
  if (seq->blocks.empty()) {
    // Prefix cache: at least one token must be computed to produce logits.
    const int max_blocks = (static_cast<int>(seq->tokens.size()) - 1) / bs;
    seq->blocks = blocks_.acquire_cached_prefix(all, max_blocks);
    std::uint64_t parent = BlockManager::kRootHash;
    for (std::size_t k = 0; k < seq->blocks.size(); ++k) {
      parent = BlockManager::hash_block(parent, all.subspan(k * bs, static_cast<std::size_t>(bs)));
      seq->block_hashes.push_back(parent);
    }
    seq->num_computed = static_cast<int>(seq->blocks.size()) * bs;
  }
  const int remaining = static_cast<int>(seq->tokens.size()) - seq->num_computed;
  int n = remaining;
  if (options_.chunked_prefill) {
    n = std::min(remaining, budget);
  } else if (n > budget && !out.chunks.empty()) {
    release_blocks(seq);
    return false;  // a whole prompt must wait for a step of its own
  }
  int reserve = seq->num_computed + n;
  if (!options_.preemption) {
    const int to_generate = std::max(0, seq->sampling.max_tokens - seq->num_output());
    reserve = std::min(static_cast<int>(seq->tokens.size()) + to_generate, max_context_);
  }
  if (!ensure_blocks(seq, reserve)) {
    release_blocks(seq);
    return false;
  }
  if (seq->cached_prompt_tokens < 0) {
    seq->cached_prompt_tokens = seq->num_computed;
    blocks_.count_query(static_cast<std::uint64_t>(seq->prompt_len),
                        static_cast<std::uint64_t>(std::min(seq->num_computed, seq->prompt_len)));
  }
  waiting_.pop_front();
  running_.push_back(seq);
  out.chunks.push_back({seq, n});
  budget -= n;
  return true;
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  int budget = options_.max_num_batched_tokens;
  if (options_.chunked_prefill) {
    schedule_running(out, budget);
    // No admissions in a step that had to preempt: memory is short.
    while (!waiting_.empty() && budget > 0 && out.preempted.empty() &&
           static_cast<int>(running_.size()) < options_.max_num_seqs) {
      if (!admit_head(out, budget)) break;
    }
  } else {
    while (!waiting_.empty() && budget > 0 &&
           static_cast<int>(running_.size()) < options_.max_num_seqs) {
      if (!admit_head(out, budget)) break;
    }
    if (out.chunks.empty()) {
      budget = std::max(options_.max_num_batched_tokens, static_cast<int>(running_.size()));
      schedule_running(out, budget);
    }
  }
  for (const auto& c : out.chunks) {
    const bool decode = c.num_tokens == 1 && c.seq->num_computed > 0 &&
                        c.seq->num_computed + 1 == static_cast<int>(c.seq->tokens.size()) &&
                        c.seq->num_computed >= c.seq->prompt_len;
    (decode ? out.decode_tokens : out.prefill_tokens) += c.num_tokens;
  }
  return out;
}

void Scheduler::on_computed(Sequence* seq, int n) {
  seq->num_computed += n;
  const int bs = blocks_.block_size();
  const auto all = std::span<const std::int32_t>(seq->tokens);
  while (static_cast<int>(seq->block_hashes.size()) < seq->num_computed / bs) {
    const std::size_t k = seq->block_hashes.size();
    const std::uint64_t parent = k == 0 ? BlockManager::kRootHash : seq->block_hashes[k - 1];
    seq->block_hashes.push_back(blocks_.register_full_block(
        seq->blocks[k], parent, all.subspan(k * bs, static_cast<std::size_t>(bs))));
  }
}

}  // namespace prism::engine
