# Shared build settings for every Prism target.

add_library(prism_options INTERFACE)
# -Wno-restrict: GCC 12 reports false positives inside libstdc++'s
# std::string operator+ at -O2/-O3 (GCC bug 105329).
target_compile_options(prism_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror -Wno-missing-field-initializers -Wno-restrict>)
target_compile_definitions(prism_options INTERFACE $<$<BOOL:${PRISM_HAVE_CUDA}>:PRISM_HAVE_CUDA=1>)
if(PRISM_SANITIZE)
  target_compile_options(prism_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX,C>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined>)
  target_link_options(prism_options INTERFACE -fsanitize=address,undefined)
endif()

# prism_library(NAME folder SOURCES ... DEPS ...): a static library whose
# public headers live in <folder>/include/prism/<folder>/.
function(prism_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE prism_options ${ARG_PRIVATE_DEPS})
endfunction()

# prism_test(NAME SOURCES ... DEPS ...): one Catch2 executable registered with
# CTest. Catch's main is compiled once, in prism_catch_main.
function(prism_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE prism_catch_main prism_options ${ARG_DEPS})
  add_test(NAME ${name} COMMAND ${name} --use-colour no)
  set_tests_properties(${name} PROPERTIES
    ENVIRONMENT "PRISM_SOURCE_DIR=${CMAKE_SOURCE_DIR};PRISM_BINARY_DIR=${CMAKE_BINARY_DIR};PRISM_CACHE=${CMAKE_SOURCE_DIR}/.cache"
    LABELS "${ARG_LABELS}")
endfunction()

# prism_benchmark(NAME SOURCES ... DEPS ...): a Google Benchmark binary.
function(prism_benchmark name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE benchmark::benchmark prism_options ${ARG_DEPS})
endfunction()
