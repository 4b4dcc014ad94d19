// Continuous batching: which sequences compute how many tokens in the next
// step, under a per-step token budget and the KV blocks available.
//
// Policies (each switchable, for the harness to compare):
//   chunked_prefill = true   Sarathi-Serve: running sequences first (decodes and
//                            unfinished prefills), then waiting prompts, each
//                            prefill cut to the budget that is left, so prompt
//                            chunks share steps with decodes.
//   chunked_prefill = false  vLLM v0: a step either prefills whole waiting
//                            prompts (prefill first; one prompt may exceed the
//                            budget alone) or decodes every running sequence.
//   prefix_caching           admission reuses cached full blocks of the prompt.
//   preemption = true        blocks are allocated as tokens need them; when
//                            they run out, the most recently admitted sequence
//                            is preempted by recompute (its blocks freed, it
//                            goes back to the head of the queue).
//   preemption = false       admission reserves blocks for prompt + max_tokens,
//                            so no sequence ever runs out.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "prism/engine/block_manager.h"
#include "prism/engine/sampling.h"

namespace prism::engine {

struct SchedulerOptions {
  int max_num_batched_tokens = 512;  // token budget per step
  int max_num_seqs = 64;             // running sequences at most
  bool chunked_prefill = true;
  bool prefix_caching = true;
  bool preemption = true;
};

struct Sequence {
  std::uint64_t id = 0;
  std::vector<std::int32_t> tokens;  // prompt, then generated tokens
  int prompt_len = 0;
  int num_computed = 0;                     // tokens whose KV is in the cache
  std::vector<int> blocks;                  // block table
  std::vector<std::uint64_t> block_hashes;  // hash chain of the full blocks computed so far
  int cached_prompt_tokens = -1;            // prefix-cache hit at first admission; -1 before
  int preemptions = 0;
  SamplingParams sampling;

  int num_output() const { return static_cast<int>(tokens.size()) - prompt_len; }
};

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int num_tokens = 0;  // computed this step, starting at seq->num_computed
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;
  std::vector<Sequence*> preempted;
  int prefill_tokens = 0;  // tokens of chunks that are not single decode tokens
  int decode_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, BlockManager& blocks, int max_context);

  const SchedulerOptions& options() const { return options_; }
  void add(Sequence* seq);     // joins the waiting queue
  void remove(Sequence* seq);  // finished or aborted: leaves the queues, frees its blocks
  SchedulerOutput schedule();
  // After the forward pass: n more tokens of seq are in the cache.
  void on_computed(Sequence* seq, int n);

  std::size_t num_waiting() const { return waiting_.size(); }
  std::size_t num_running() const { return running_.size(); }
  std::uint64_t preemptions() const { return preemptions_; }

 private:
  bool ensure_blocks(Sequence* seq, int tokens);
  void release_blocks(Sequence* seq);
  void preempt(Sequence* seq);
  // Tries to move the head of the waiting queue into the step; false to stop admitting.
  bool admit_head(SchedulerOutput& out, int& budget);
  void schedule_running(SchedulerOutput& out, int& budget);

  SchedulerOptions options_;
  BlockManager& blocks_;
  int max_context_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;
  std::uint64_t preemptions_ = 0;
};

}  // namespace prism::engine
