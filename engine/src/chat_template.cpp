#include "prism/engine/chat_template.h"

#include <optional>

namespace prism::engine {
namespace {

std::optional<std::int32_t> special_id(const workloads::Tokenizer& tok, const char* text) {
  const auto ids = tok.encode(text, /*allow_special=*/true);
  if (ids.size() == 1 && tok.is_special(ids[0])) return ids[0];
  return std::nullopt;
}

void append(std::vector<std::int32_t>& out, const std::vector<std::int32_t>& ids) {
  out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace

ChatPrompt apply_chat_template(const workloads::Tokenizer& tok,
                               const std::vector<ChatMessage>& messages) {
  ChatPrompt p;
  const auto start_header = special_id(tok, "<|start_header_id|>");
  const auto end_header = special_id(tok, "<|end_header_id|>");
  const auto eot = special_id(tok, "<|eot_id|>");
  if (start_header && end_header && eot) {
    p.template_name = "llama3";
    if (const auto bos = special_id(tok, "<|begin_of_text|>")) p.tokens.push_back(*bos);
    const auto header = [&](const std::string& role) {
      p.tokens.push_back(*start_header);
      append(p.tokens, tok.encode(role));
      p.tokens.push_back(*end_header);
      append(p.tokens, tok.encode("\n\n"));
    };
    for (const auto& m : messages) {
      header(m.role);
      append(p.tokens, tok.encode(m.content));
      p.tokens.push_back(*eot);
    }
    header("assistant");
    p.stop_token_ids.push_back(*eot);
    return p;
  }
  const auto im_start = special_id(tok, "<|im_start|>");
  const auto im_end = special_id(tok, "<|im_end|>");
  if (im_start && im_end) {
    p.template_name = "chatml";
    for (const auto& m : messages) {
      p.tokens.push_back(*im_start);
      append(p.tokens, tok.encode(m.role + "\n" + m.content));
      p.tokens.push_back(*im_end);
      append(p.tokens, tok.encode("\n"));
    }
    p.tokens.push_back(*im_start);
    append(p.tokens, tok.encode("assistant\n"));
    p.stop_token_ids.push_back(*im_end);
    return p;
  }
  p.template_name = "plain";
  std::string text;
  for (const auto& m : messages) text += m.role + ": " + m.content + "\n\n";
  text += "assistant:";
  p.tokens = tok.encode(text);
  return p;
}

}  // namespace prism::engine
