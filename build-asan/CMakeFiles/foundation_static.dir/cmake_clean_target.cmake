file(REMOVE_RECURSE
  "libfoundation.a"
)
