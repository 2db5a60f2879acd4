#----------------------------------------------------------------
# Generated CMake target import file for configuration "Debug".
#----------------------------------------------------------------

# Commands may need to know the format version.
set(CMAKE_IMPORT_FILE_VERSION 1)

# Import target "Foundation::foundation" for configuration "Debug"
set_property(TARGET Foundation::foundation APPEND PROPERTY IMPORTED_CONFIGURATIONS DEBUG)
set_target_properties(Foundation::foundation PROPERTIES
  IMPORTED_LOCATION_DEBUG "${_IMPORT_PREFIX}/lib/libfoundation.so.0.1.0"
  IMPORTED_SONAME_DEBUG "libfoundation.so.0"
  )

list(APPEND _cmake_import_check_targets Foundation::foundation )
list(APPEND _cmake_import_check_files_for_Foundation::foundation "${_IMPORT_PREFIX}/lib/libfoundation.so.0.1.0" )

# Import target "Foundation::foundation_static" for configuration "Debug"
set_property(TARGET Foundation::foundation_static APPEND PROPERTY IMPORTED_CONFIGURATIONS DEBUG)
set_target_properties(Foundation::foundation_static PROPERTIES
  IMPORTED_LINK_INTERFACE_LANGUAGES_DEBUG "C"
  IMPORTED_LOCATION_DEBUG "${_IMPORT_PREFIX}/lib/libfoundation.a"
  )

list(APPEND _cmake_import_check_targets Foundation::foundation_static )
list(APPEND _cmake_import_check_files_for_Foundation::foundation_static "${_IMPORT_PREFIX}/lib/libfoundation.a" )

# Commands beyond this point should not need to know the version.
set(CMAKE_IMPORT_FILE_VERSION)
