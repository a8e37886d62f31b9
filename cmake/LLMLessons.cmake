# Helpers that turn the lesson folders into targets and tests.
#
#   llm_lesson(NN folder DEPS ... PCH ...)   declare lesson NN; its headers link against DEPS; PCH
#                                    names library headers worth precompiling for its suites
#   llm_finish_lessons()             choose, per lesson, which tree the programs use
#   llm_add_all_lesson_tests()       lessonNN_basic / lessonNN_advanced + ctest entries
#   llm_add_program(name src...)     a pipeline program built on the selected lessons
#
# Targets per lesson NN (all header-only INTERFACE libraries):
#   llm::lessonNN             the selected tree: solutions/ with USE_SOLUTIONS=ON, else curriculum/
#   llm::reference::lessonNN  solutions/ when it is present, else the selected tree
#
# Isolated grading: lesson NN's tests see the selected tree's lesson NN and the *reference* of
# every other lesson, so a bug in lesson 02 never costs points in lesson 05. Every header lives in
# exactly one lesson, so include-path order alone decides which file `#include <llm/...>` finds.

set(LLM_CURRICULUM_DIR ${PROJECT_SOURCE_DIR}/curriculum)
set(LLM_SOLUTIONS_DIR ${PROJECT_SOURCE_DIR}/solutions)
if(USE_SOLUTIONS)
  set(LLM_SELECTED_DIR ${LLM_SOLUTIONS_DIR})
else()
  set(LLM_SELECTED_DIR ${LLM_CURRICULUM_DIR})
endif()

function(llm_lesson num folder)
  cmake_parse_arguments(ARG "" "" "DEPS;PCH" ${ARGN})
  set_property(GLOBAL APPEND PROPERTY LLM_ALL_LESSONS ${num})
  set_property(GLOBAL PROPERTY LLM_LESSON_PCH_${num} ${ARG_PCH})
  set_property(GLOBAL PROPERTY LLM_LESSON_FOLDER_${num} ${folder})
  if(NOT EXISTS ${LLM_SELECTED_DIR}/${folder}/include)
    return()  # a lesson whose code has not arrived yet
  endif()
  if(USE_SOLUTIONS AND NOT EXISTS ${LLM_SOLUTIONS_DIR}/${folder})
    message(FATAL_ERROR "USE_SOLUTIONS=ON but ${LLM_SOLUTIONS_DIR}/${folder} does not exist")
  endif()
  set_property(GLOBAL APPEND PROPERTY LLM_LESSONS ${num})

  foreach(kind selected reference)
    if(kind STREQUAL "reference" AND EXISTS ${LLM_SOLUTIONS_DIR}/${folder}/include)
      set(dir ${LLM_SOLUTIONS_DIR}/${folder}/include)
      set(name llm_reference_lesson${num})
      set(alias llm::reference::lesson${num})
    elseif(kind STREQUAL "reference")
      set(dir ${LLM_SELECTED_DIR}/${folder}/include)
      set(name llm_reference_lesson${num})
      set(alias llm::reference::lesson${num})
    else()
      set(dir ${LLM_SELECTED_DIR}/${folder}/include)
      set(name llm_lesson${num})
      set(alias llm::lesson${num})
    endif()
    add_library(${name} INTERFACE)
    add_library(${alias} ALIAS ${name})
    target_include_directories(${name} INTERFACE ${dir})
    target_link_libraries(${name} INTERFACE llm::common ${ARG_DEPS})
  endforeach()
endfunction()

# Normalises "1" -> "01" so LLM_REFERENCE_LESSONS accepts either spelling.
function(llm_two_digits out value)
  if(value MATCHES "^[0-9]$")
    set(value "0${value}")
  endif()
  set(${out} ${value} PARENT_SCOPE)
endfunction()

function(llm_finish_lessons)
  get_property(lessons GLOBAL PROPERTY LLM_LESSONS)
  set(reference "")
  foreach(item IN LISTS LLM_REFERENCE_LESSONS)
    llm_two_digits(num ${item})
    if(NOT num IN_LIST lessons)
      message(FATAL_ERROR "LLM_REFERENCE_LESSONS: '${item}' is not a lesson with code; valid: ${lessons}")
    endif()
    get_property(folder GLOBAL PROPERTY LLM_LESSON_FOLDER_${num})
    if(NOT EXISTS ${LLM_SOLUTIONS_DIR}/${folder}/include)
      message(FATAL_ERROR "LLM_REFERENCE_LESSONS: lesson ${num} has no reference here (${LLM_SOLUTIONS_DIR}/${folder} is missing)")
    endif()
    list(APPEND reference ${num})
  endforeach()

  # What the programs link: your lesson, or the reference where you asked for it.
  add_library(llm_program_lessons INTERFACE)
  add_library(llm::program_lessons ALIAS llm_program_lessons)
  foreach(num IN LISTS lessons)
    if(num IN_LIST reference)
      target_link_libraries(llm_program_lessons INTERFACE llm::reference::lesson${num})
    else()
      target_link_libraries(llm_program_lessons INTERFACE llm::lesson${num})
    endif()
  endforeach()
  if(USE_SOLUTIONS)
    set(tree "solutions/")
  else()
    set(tree "curriculum/")
  endif()
  message(STATUS "LLM: lessons ${lessons} from ${tree}; isolated grading ${LLM_ISOLATED_GRADING}; "
                 "programs use the reference for: ${reference}")
endfunction()

# Every target that includes torch shares one precompiled header (measured with clang++ 14: 6 s per test file
# with it instead of 15-30 s without).
function(llm_torch_target target)
  target_precompile_headers(${target} REUSE_FROM llm_pch)
  target_compile_options(${target} PRIVATE ${LLM_WARNINGS})
  get_target_property(type ${target} TYPE)
  if(LLM_TCMALLOC AND type STREQUAL "EXECUTABLE")
    target_link_libraries(${target} PRIVATE ${LLM_TCMALLOC_LIBRARY})
  endif()
endfunction()

# The learner's loop (touch a header of lesson NN, `ctest -R lessonNN`: issue target 10 s). With
# LLM_FAST_TEST_BUILD, lesson NN's two suites share a precompiled header of their own: the common
# one plus every header of the lessons before NN, the code NN builds on, which the learner does not
# touch while working on NN (the reference lessons of isolated grading). A suite then compiles only
# its own lesson and its tests. A lesson whose headers include one of NN's (08 and 09 include lesson
# 10's trainer.h) stays out, so an edit to lesson NN never rebuilds its PCH.
function(llm_lesson_pch num lessons deps)
  get_target_property(own llm_lesson${num} INTERFACE_INCLUDE_DIRECTORIES)
  file(GLOB_RECURSE own_headers RELATIVE ${own} ${own}/*.h)
  set(headers "")
  foreach(other IN LISTS lessons)
    if(other GREATER_EQUAL num)
      break()
    endif()
    # Only the reference: with cumulative grading, or in a hand-out where lesson `other` has no
    # solution, its headers are a learner's, and a PCH holding them would let a lesson that does not
    # compile break a suite that never includes it.
    if(NOT LLM_ISOLATED_GRADING)
      break()
    endif()
    get_target_property(dir llm_reference_lesson${other} INTERFACE_INCLUDE_DIRECTORIES)
    string(FIND "${dir}" "${LLM_SOLUTIONS_DIR}/" at)
    if(NOT at EQUAL 0)
      continue()
    endif()
    file(GLOB_RECURSE found RELATIVE ${dir} ${dir}/*.h)
    set(uses_own FALSE)
    foreach(header IN LISTS found)
      file(STRINGS ${dir}/${header} includes REGEX "^#include <llm/")
      foreach(own_header IN LISTS own_headers)
        if("${includes}" MATCHES "<${own_header}>")
          set(uses_own TRUE)
        endif()
      endforeach()
    endforeach()
    if(NOT uses_own)
      list(SORT found)
      foreach(header IN LISTS found)
        list(APPEND headers "<${header}>")
      endforeach()
    endif()
  endforeach()
  # Library headers lesson NN's own code includes that the common PCH lacks and that cost seconds
  # to parse (lesson 10's c10d): declared with llm_lesson(... PCH ...), never edited by a learner.
  get_property(extra GLOBAL PROPERTY LLM_LESSON_PCH_${num})
  list(APPEND headers ${extra})
  list(REMOVE_DUPLICATES headers)
  # One generated header holds the list. CMake gives cmake_pch.hxx the timestamp of the first header
  # named, so a list that changes at configure time (a grading mode, a hand-out) must change a
  # file's time, or ninja keeps the old .pch and clang refuses it ("has been modified since").
  # file(CONFIGURE) rewrites it only when its content differs.
  set(content "#include <llm/common/pch.h>\n")
  foreach(header IN LISTS headers)
    string(APPEND content "#include ${header}\n")
  endforeach()
  set(list_header ${PROJECT_BINARY_DIR}/generated/pch/lesson${num}.h)
  file(CONFIGURE OUTPUT ${list_header} CONTENT "${content}" @ONLY)
  add_library(llm_pch_lesson${num} OBJECT ${PROJECT_SOURCE_DIR}/common/src/pch.cpp)
  target_precompile_headers(llm_pch_lesson${num} PRIVATE ${list_header})
  target_link_libraries(llm_pch_lesson${num} PRIVATE llm::test_main ${deps} nlohmann_json::nlohmann_json yaml-cpp)
  target_compile_options(llm_pch_lesson${num} PRIVATE ${LLM_WARNINGS} -O0)
endfunction()

function(llm_add_all_lesson_tests)
  get_property(lessons GLOBAL PROPERTY LLM_LESSONS)
  file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/test-results)
  foreach(num IN LISTS lessons)
    get_property(folder GLOBAL PROPERTY LLM_LESSON_FOLDER_${num})
    set(tests_dir ${LLM_CURRICULUM_DIR}/${folder}/tests)
    if(NOT EXISTS ${tests_dir}/basic.cpp)
      continue()
    endif()

    set(deps llm::lesson${num})
    foreach(other IN LISTS lessons)
      if(other STREQUAL num)
        continue()
      elseif(LLM_ISOLATED_GRADING)
        list(APPEND deps llm::reference::lesson${other})
      else()
        list(APPEND deps llm::lesson${other})
      endif()
    endforeach()

    if(LLM_FAST_TEST_BUILD)
      llm_lesson_pch(${num} "${lessons}" "${deps}")
    endif()

    set(binaries "")
    foreach(tier basic advanced)
      set(target lesson${num}_${tier})
      add_executable(${target} ${tests_dir}/${tier}.cpp)
      target_link_libraries(${target} PRIVATE llm::test_main ${deps})
      llm_torch_target(${target})
      if(LLM_FAST_TEST_BUILD)
        set_target_properties(${target} PROPERTIES PRECOMPILE_HEADERS_REUSE_FROM llm_pch_lesson${num})
        target_compile_options(${target} PRIVATE -O0)
      endif()
      list(APPEND binaries ${target})

      # One ctest entry per suite binary; inside it, common/src/test_main.cpp runs every test in
      # a forked child with its own timeout, so one crash or hang never hides the other tests.
      add_test(NAME lesson${num}.${tier}
               COMMAND ${target} --llm-name=lesson${num}.${tier}
                       --llm-results=${PROJECT_BINARY_DIR}/test-results/lesson${num}.${tier}.tsv
                       --llm-timeout=${LLM_TEST_TIMEOUT})
      set_tests_properties(lesson${num}.${tier} PROPERTIES
        LABELS "lesson${num};${tier}"
        FIXTURES_REQUIRED lesson${num}_built
        TIMEOUT 3600)
    endforeach()

    # `ctest -R lessonNN` rebuilds lesson NN first: the build is a fixture of its tests.
    add_custom_target(lesson${num} DEPENDS ${binaries})
    add_test(NAME lesson${num}.build
             COMMAND ${CMAKE_COMMAND} --build ${PROJECT_BINARY_DIR} --target lesson${num})
    set_tests_properties(lesson${num}.build PROPERTIES
      LABELS "lesson${num};build"
      FIXTURES_SETUP lesson${num}_built
      RESOURCE_LOCK llm_build_tree)
  endforeach()
endfunction()

function(llm_add_program name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE llm::program_lessons CLI11::CLI11)
  llm_torch_target(${name})
endfunction()
