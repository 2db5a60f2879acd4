file(REMOVE_RECURSE
  "CMakeFiles/test_rcu.dir/test_rcu.c.o"
  "CMakeFiles/test_rcu.dir/test_rcu.c.o.d"
  "test_rcu"
  "test_rcu.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/test_rcu.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
