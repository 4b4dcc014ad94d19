// The CPU hot loops compiled for avx2 (see simd_body.inc; flags in CMakeLists.txt).
#define PRISM_ISA_NS avx2
#define PRISM_ISA_NAME "avx2"
#define PRISM_VW 8
#include "simd_body.inc"
