// The CPU hot loops compiled for generic (see simd_body.inc; flags in CMakeLists.txt).
#define PRISM_ISA_NS generic
#define PRISM_ISA_NAME "generic"
#define PRISM_VW 4
#include "simd_body.inc"
