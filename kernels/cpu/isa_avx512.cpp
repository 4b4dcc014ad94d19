// The CPU hot loops compiled for avx512 (see simd_body.inc; flags in CMakeLists.txt).
#define PRISM_ISA_NS avx512
#define PRISM_ISA_NAME "avx512"
#define PRISM_VW 16
#include "simd_body.inc"
