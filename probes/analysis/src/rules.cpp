// Stage rules: parsing (shared with the agent) and the built-in rule sets.
#include <fstream>
#include <map>
#include <sstream>

#include "prism/analysis/breakdown.h"

namespace prism::analysis {
namespace {

// Prism's reference engine names its NVTX ranges after its stages.
const char* const kPrismRules = R"(prism-rules 1
# Prism reference engine (engine/): one "step" range per engine iteration.
iteration step
request request*
range schedule* schedule
range prefill* prefill
range decode* decode
range attention* attention
range mlp* mlp
range sample* sample
range detokenize* detokenize
range kv-transfer* kv-transfer
range queue* queue
)";

// vLLM: torch.profiler / NVTX function ranges of the V1 engine core and GPU
// model runner, and the kernels vLLM, FlashAttention and FlashInfer launch.
const char* const kVllmRules = R"(prism-rules 1
iteration *EngineCore*step*
iteration *execute_model*
request *request*
range *schedule* schedule
range *_prepare_inputs* prepare
range *prepare_inputs* prepare
range *model_forward* forward
range *sample* sample
range *detokeniz* detokenize
range *output_processor* detokenize
kernel *paged_attention* attention
kernel *flash_fwd* attention
kernel *flash*attn* attention
kernel *reshape_and_cache* kv-cache
kernel *BatchPrefill* attention
kernel *BatchDecode* attention
kernel *rms_norm* norm
kernel *rotary_embedding* rope
kernel *silu_and_mul* mlp
kernel *act_and_mul* mlp
kernel *fused_moe* moe
kernel *topk* sample
kernel *sampl* sample
kernel *gemm* gemm
kernel *cutlass* gemm
kernel *xmma* gemm
)";

// SGLang: scheduler event loop and forward batches; FlashInfer / Triton kernels.
const char* const kSglangRules = R"(prism-rules 1
iteration *event_loop*
iteration *forward_batch*
request *request*
range *get_next_batch_to_run* schedule
range *schedule* schedule
range *prefill* prefill
range *extend* prefill
range *decode* decode
range *sample* sample
range *detokeniz* detokenize
kernel *BatchPrefill* attention
kernel *BatchDecode* attention
kernel *MergeState* attention
kernel *extend_attention* attention
kernel *decode_attention* attention
kernel *flash* attention
kernel *rms_norm* norm
kernel *rotary* rope
kernel *silu_and_mul* mlp
kernel *fused_moe* moe
kernel *topk* sample
kernel *sampl* sample
kernel *gemm* gemm
kernel *cutlass* gemm
kernel *xmma* gemm
)";

// TensorRT-LLM: executor loop ranges and its attention kernels (MMHA, XQA, FMHA).
const char* const kTrtllmRules = R"(prism-rules 1
iteration *executorLoop*
iteration *forwardAsync*
request *request*
range *schedul* schedule
range *prepare* prepare
range *context* prefill
range *generation* decode
range *sampl* sample
range *decod* decode
kernel *masked_multihead_attention* attention
kernel *mmha* attention
kernel *xqa* attention
kernel *kernel_mha* attention
kernel *fmha* attention
kernel *rms*norm* norm
kernel *rope* rope
kernel *gated*activation* mlp
kernel *topk* sample
kernel *sampl* sample
kernel *gemm* gemm
kernel *cutlass* gemm
kernel *xmma* gemm
)";

const std::map<std::string, std::string>& builtins() {
  static const std::map<std::string, std::string> sets = {{"prism", kPrismRules},
                                                          {"vllm", kVllmRules},
                                                          {"sglang", kSglangRules},
                                                          {"trtllm", kTrtllmRules}};
  return sets;
}

}  // namespace

StageRules::StageRules() : set_(std::make_shared<control::StageRuleSet>()) {}

StageRules StageRules::parse(const std::string& text, const std::string& origin) {
  StageRules rules;
  char error[256] = {};
  if (!control::parse_stage_rules(text.data(), text.size(), rules.set_.get(), error,
                                  sizeof(error))) {
    throw TraceError(origin + ": " + error);
  }
  rules.text_ = text;
  return rules;
}

const std::string& builtin_rules_text(const std::string& name) {
  const auto it = builtins().find(name);
  if (it == builtins().end()) {
    std::string known;
    for (const auto& [key, value] : builtins()) known += (known.empty() ? "" : ", ") + key;
    throw TraceError("unknown built-in rule set '" + name + "' (known: " + known + ")");
  }
  return it->second;
}

StageRules StageRules::builtin(const std::string& name) {
  return parse(builtin_rules_text(name), "built-in rules '" + name + "'");
}

std::vector<std::string> StageRules::builtin_names() {
  std::vector<std::string> names;
  for (const auto& [key, value] : builtins()) names.push_back(key);
  return names;
}

StageRules StageRules::load(const std::string& name_or_path) {
  if (builtins().count(name_or_path) != 0) return builtin(name_or_path);
  std::ifstream in(name_or_path);
  if (!in) {
    throw TraceError("rules '" + name_or_path + "': neither a built-in set (prism, vllm, sglang, " +
                     "trtllm) nor a readable file");
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse(buffer.str(), name_or_path);
}

std::vector<std::string> StageRules::stage_names() const {
  std::vector<std::string> names;
  for (uint32_t i = 0; i < set_->count; ++i) {
    const auto& rule = set_->rules[i];
    if (rule.target != control::RuleTarget::kRange && rule.target != control::RuleTarget::kKernel)
      continue;
    bool seen = false;
    for (const auto& n : names) seen |= n == rule.stage;
    if (!seen) names.emplace_back(rule.stage);
  }
  return names;
}

}  // namespace prism::analysis
