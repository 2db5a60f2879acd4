file(REMOVE_RECURSE
  "CMakeFiles/test_multiproc.dir/test_multiproc.c.o"
  "CMakeFiles/test_multiproc.dir/test_multiproc.c.o.d"
  "test_multiproc"
  "test_multiproc.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/test_multiproc.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
