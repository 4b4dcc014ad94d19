// Deterministic randomness for workload generation. Standard-library
// distributions are implementation-defined, so everything here is written
// out: xoshiro256** seeded through splitmix64, and the distributions on top.
// Same seed, same numbers, on every standard library.
#pragma once

#include <cstdint>
#include <string_view>

namespace prism::workloads {

__extension__ using uint128 = unsigned __int128;

class Rng {
 public:
  explicit Rng(std::uint64_t seed);

  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n) (multiply-shift; n > 0).
  std::uint64_t below(std::uint64_t n) {
    return static_cast<std::uint64_t>((static_cast<uint128>(next()) * n) >> 64);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1]: safe for log().
  double uniform_open0() { return (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53; }
  double normal();                           // standard normal (Box-Muller)
  double exponential(double mean);           // mean > 0
  double gamma(double shape, double scale);  // Marsaglia-Tsang; shape, scale > 0

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

// A seed for one named stream (content id, session, ...) derived from the
// workload seed, so content does not depend on generation order.
std::uint64_t derive_seed(std::uint64_t seed, std::string_view key);

}  // namespace prism::workloads
