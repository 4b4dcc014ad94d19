#include "prism/engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace prism::engine {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double uniform01(std::uint64_t seed, std::uint64_t index) {
  const std::uint64_t r = splitmix64(splitmix64(seed) ^ (index * 0xd1b54a32d192ed03ull + 1));
  return static_cast<double>(r >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

std::int32_t sample_token(std::span<const float> logits, int allowed_vocab, float temperature,
                          float top_p, std::uint64_t seed, std::uint64_t draw_index,
                          std::vector<std::pair<float, std::int32_t>>& scratch) {
  const int n = std::min<int>(allowed_vocab, static_cast<int>(logits.size()));
  if (n <= 0) return 0;
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (logits[static_cast<std::size_t>(i)] > logits[static_cast<std::size_t>(best)]) best = i;
  if (!(temperature > 0.0f)) return best;

  // Probabilities relative to the best logit (numerically stable).
  const double inv_t = 1.0 / static_cast<double>(temperature);
  const double top = logits[static_cast<std::size_t>(best)];
  scratch.resize(static_cast<std::size_t>(n));
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    const double p = std::exp((logits[static_cast<std::size_t>(i)] - top) * inv_t);
    scratch[static_cast<std::size_t>(i)] = {static_cast<float>(p), i};
    sum += p;
  }
  const double u = uniform01(seed, draw_index);
  const auto by_prob = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::size_t keep = scratch.size();
  double kept_mass = sum;
  if (top_p < 1.0f) {
    // Nucleus: the smallest set of most probable tokens holding top_p of the
    // mass. Sort a growing head of the list rather than the whole vocabulary.
    const double target = static_cast<double>(top_p) * sum;
    std::size_t head = std::min<std::size_t>(scratch.size(), 256);
    while (true) {
      std::partial_sort(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(head),
                        scratch.end(), by_prob);
      double acc = 0.0;
      std::size_t i = 0;
      for (; i < head; ++i) {
        acc += scratch[i].first;
        if (acc >= target) break;
      }
      if (i < head) {
        keep = i + 1;
        kept_mass = acc;
        break;
      }
      if (head == scratch.size()) {
        keep = head;
        kept_mass = acc;
        break;
      }
      head = std::min(scratch.size(), head * 8);
    }
  }
  double threshold = u * kept_mass;
  for (std::size_t i = 0; i < keep; ++i) {
    threshold -= scratch[i].first;
    if (threshold < 0.0) return scratch[i].second;
  }
  return scratch[keep - 1].second;
}

}  // namespace prism::engine
