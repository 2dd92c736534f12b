# CMake package configuration of the Tessera C library, installed by
# `cargo cinstall -p tessera-ffi` to PREFIX/share/tessera/cmake. With PREFIX
# in CMAKE_PREFIX_PATH:
#
#   find_package(tessera REQUIRED)
#   target_link_libraries(app PRIVATE tessera::tessera)
#
# tessera::tessera is the shared library (libtessera.so) with its header;
# tessera::static the static one (libtessera.a) with the system libraries it
# needs. Both come from the pkg-config file installed beside the library, so
# CMake and pkg-config users link the same way. tessera::cxx is the C++17 API
# (tessera.hpp): the static library, since the C++ half of its cxx bridge is
# in libtessera.a only (a Rust cdylib exports only what Rust defines).
cmake_minimum_required(VERSION 3.16)

get_filename_component(_tessera_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

find_package(PkgConfig QUIET)
if(NOT PKG_CONFIG_FOUND)
  set(tessera_FOUND FALSE)
  set(tessera_NOT_FOUND_MESSAGE "tessera: pkg-config is needed (Debian: apt-get install pkg-config)")
  return()
endif()

# Look in this installation first, whatever PKG_CONFIG_PATH says.
set(_tessera_saved_pc_path "$ENV{PKG_CONFIG_PATH}")
file(GLOB _tessera_pc_dirs LIST_DIRECTORIES true
  "${_tessera_prefix}/lib/pkgconfig"
  "${_tessera_prefix}/lib64/pkgconfig"
  "${_tessera_prefix}/lib/*/pkgconfig")
string(REPLACE ";" ":" _tessera_pc_path "${_tessera_pc_dirs}")
set(ENV{PKG_CONFIG_PATH} "${_tessera_pc_path}:${_tessera_saved_pc_path}")

pkg_check_modules(_TESSERA QUIET tessera)
set(ENV{PKG_CONFIG_PATH} "${_tessera_saved_pc_path}")

if(NOT _TESSERA_FOUND)
  set(tessera_FOUND FALSE)
  set(tessera_NOT_FOUND_MESSAGE "tessera: no tessera.pc under ${_tessera_prefix}")
  return()
endif()

find_library(_tessera_shared NAMES tessera PATHS ${_TESSERA_LIBRARY_DIRS} NO_DEFAULT_PATH)
find_library(_tessera_static NAMES libtessera.a PATHS ${_TESSERA_LIBRARY_DIRS} NO_DEFAULT_PATH)

if(NOT TARGET tessera::tessera AND _tessera_shared)
  add_library(tessera::tessera SHARED IMPORTED)
  set_target_properties(tessera::tessera PROPERTIES
    IMPORTED_LOCATION "${_tessera_shared}"
    INTERFACE_INCLUDE_DIRECTORIES "${_TESSERA_INCLUDE_DIRS}")
endif()

if(NOT TARGET tessera::static AND _tessera_static)
  # The system libraries Rust's standard library needs (Libs.private).
  set(_tessera_private ${_TESSERA_STATIC_LDFLAGS})
  list(FILTER _tessera_private EXCLUDE REGEX "^-L|tessera$")
  add_library(tessera::static STATIC IMPORTED)
  set_target_properties(tessera::static PROPERTIES
    IMPORTED_LOCATION "${_tessera_static}"
    INTERFACE_INCLUDE_DIRECTORIES "${_TESSERA_INCLUDE_DIRS}"
    INTERFACE_LINK_LIBRARIES "${_tessera_private}")
endif()

if(NOT TARGET tessera::cxx AND TARGET tessera::static)
  add_library(tessera::cxx INTERFACE IMPORTED)
  set_target_properties(tessera::cxx PROPERTIES
    INTERFACE_LINK_LIBRARIES tessera::static
    INTERFACE_COMPILE_FEATURES cxx_std_17)
endif()

set(tessera_VERSION "${_TESSERA_VERSION}")
set(tessera_FOUND TRUE)
