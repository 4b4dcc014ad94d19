#include "prism/harness/token_attribution.h"

#include <algorithm>
#include <numeric>

namespace prism::harness {

std::vector<std::uint32_t> attribute_tokens(std::span<const ChunkArrival> chunks,
                                            std::optional<std::uint32_t> reported_total) {
  std::vector<std::uint32_t> counts(chunks.size());
  for (std::size_t i = 0; i < chunks.size(); ++i) counts[i] = chunks[i].tokens;
  if (!reported_total) return counts;
  const std::uint64_t total = *reported_total;
  std::uint64_t exact_sum = 0;
  std::vector<std::size_t> loose;  // chunks whose count is an assumption
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i].exact) {
      exact_sum += chunks[i].tokens;
    } else {
      loose.push_back(i);
    }
  }
  if (loose.empty() || exact_sum >= total) {
    // Exact counts are the better witness; the server's total cannot be
    // placed on any chunk without contradicting them.
    for (std::size_t i : loose) counts[i] = 0;
    return counts;
  }
  const std::uint64_t remaining = total - exact_sum;
  for (std::size_t i : loose) counts[i] = 0;
  if (remaining < loose.size()) {
    // Fewer tokens than chunks: the first chunks carry them, one each.
    for (std::size_t k = 0; k < remaining; ++k) counts[loose[k]] = 1;
    return counts;
  }
  // Quotas proportional to text length, at least one token per chunk, then
  // largest-remainder rounding so the counts sum to what the server said.
  std::uint64_t bytes = 0;
  for (std::size_t i : loose) bytes += chunks[i].text_bytes;
  std::vector<double> quota(chunks.size(), 0.0);
  std::uint64_t given = 0;
  for (std::size_t i : loose) {
    quota[i] = bytes == 0 ? static_cast<double>(remaining) / static_cast<double>(loose.size())
                          : static_cast<double>(remaining) * chunks[i].text_bytes /
                                static_cast<double>(bytes);
    counts[i] = std::max<std::uint32_t>(1, static_cast<std::uint32_t>(quota[i]));
    given += counts[i];
  }
  auto residual = [&](std::size_t i) { return quota[i] - static_cast<double>(counts[i]); };
  while (given < remaining) {
    const std::size_t best =
        *std::max_element(loose.begin(), loose.end(),
                          [&](std::size_t a, std::size_t b) { return residual(a) < residual(b); });
    ++counts[best];
    ++given;
  }
  while (given > remaining) {
    std::size_t worst = loose.front();
    bool found = false;
    for (std::size_t i : loose) {
      if (counts[i] > 1 && (!found || residual(i) < residual(worst))) {
        worst = i;
        found = true;
      }
    }
    --counts[worst];
    --given;
  }
  return counts;
}

std::vector<double> token_times(std::span<const ChunkArrival> chunks,
                                std::span<const std::uint32_t> counts, std::int64_t origin_ns) {
  std::vector<double> times;
  times.reserve(std::accumulate(counts.begin(), counts.end(), std::size_t{0}));
  for (std::size_t i = 0; i < chunks.size() && i < counts.size(); ++i) {
    const double t = static_cast<double>(chunks[i].t_ns - origin_ns) * 1e-9;
    times.insert(times.end(), counts[i], t);
  }
  return times;
}

}  // namespace prism::harness
