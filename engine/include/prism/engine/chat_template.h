// Turns chat messages into prompt tokens. Vocabularies with Llama-3 header
// tokens get the Llama-3 template, ChatML vocabularies (Qwen) get ChatML, and
// everything else a plain-text "role: content" template. Message text is
// always encoded as text, so a user cannot inject special tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prism/workloads/tokenizer.h"

namespace prism::engine {

struct ChatMessage {
  std::string role;  // system | user | assistant | tool | developer
  std::string content;
};

struct ChatPrompt {
  std::vector<std::int32_t> tokens;
  std::vector<std::int32_t> stop_token_ids;  // end-of-turn tokens of the template
  std::string template_name;                 // "llama3", "chatml" or "plain"
};

ChatPrompt apply_chat_template(const workloads::Tokenizer& tokenizer,
                               const std::vector<ChatMessage>& messages);

}  // namespace prism::engine
