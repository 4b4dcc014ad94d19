// The CPU hot loops compiled for scalar (see simd_body.inc; flags in CMakeLists.txt).
#define PRISM_ISA_NS scalar
#define PRISM_ISA_NAME "scalar"
#define PRISM_VW 1
#include "simd_body.inc"
