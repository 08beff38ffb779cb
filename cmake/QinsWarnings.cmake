# Warnings for the project's own targets: qins_warnings(<target>)
function(qins_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
endfunction()
