// Large arrays for memory-bound kernels and the bandwidth they are compared with.
#pragma once

#include <cstddef>
#include <memory>

namespace prism::kernels {

// Raw storage, 64-byte aligned, and from 2 MiB up 2 MiB aligned with
// transparent huge pages requested before the first touch (Linux madvise;
// ignored where unsupported). A kernel that touches every page of a long
// array once pays, with 4 KB pages, a TLB miss (a two-level page walk under a
// hypervisor) every 4 KB; the STREAM triad a kernel is measured against must
// run on the same kind of pages or the comparison flatters the kernel.
// zero = false leaves the memory untouched so that threads can first-touch
// their own slices (NUMA placement). Move-only; a moved-from buffer is empty.
class LargeBuffer {
 public:
  LargeBuffer() = default;
  explicit LargeBuffer(std::size_t bytes, bool zero = true);
  LargeBuffer(LargeBuffer&& other) noexcept;
  LargeBuffer& operator=(LargeBuffer&& other) noexcept;
  LargeBuffer(const LargeBuffer&) = delete;
  LargeBuffer& operator=(const LargeBuffer&) = delete;
  ~LargeBuffer() = default;

  void* data() { return data_.get(); }
  const void* data() const { return data_.get(); }
  template <typename T>
  T* as() {
    return static_cast<T*>(data());
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data());
  }
  std::size_t bytes() const { return bytes_; }
  bool huge_pages_requested() const { return huge_; }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Free> data_;
  std::size_t bytes_ = 0;
  bool huge_ = false;
};

}  // namespace prism::kernels
