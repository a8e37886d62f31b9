// llm launch: run one command as N data-parallel processes on this machine, the way torchrun does.
//
//   llm launch --nproc 2 -- pretrain --config configs/quick.yaml --run runs/ddp
//
// Each child is this same program with the command after "--", and torchrun's environment:
// RANK and LOCAL_RANK (0..N-1), WORLD_SIZE and LOCAL_WORLD_SIZE (N), MASTER_ADDR (127.0.0.1) and
// MASTER_PORT. Rank 0 serves the rendezvous (lesson 10's ProcessGroup::connect). On several
// machines, start the command on each with those variables set by hand (RANK counting across
// machines), as torchrun --nnodes does. If one child fails, the others are stopped, and the exit
// status is the first failure's.
#include "commands.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

namespace llm::cli {

namespace {

std::vector<pid_t> g_children;

void forward_signal(int sig) {
  for (pid_t pid : g_children) kill(pid, sig);
}

}  // namespace

int launch_main(int argc, char** argv) {
  CLI::App app{"Run an llm command as N data-parallel processes on this machine (torchrun's variables).", "llm launch"};
  int64_t nproc = 2, port = 29500;
  std::string addr = "127.0.0.1";
  std::vector<std::string> command;
  app.add_option("--nproc", nproc, "processes to start")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--master-port", port, "the rendezvous port on this machine")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--master-addr", addr, "the rendezvous address")->capture_default_str();
  app.add_option("command", command, "the llm command to run, after --")->required();
  app.allow_extras(false);
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm launch", [&]() -> int {
    if (command.front() == "launch") throw UsageError("llm launch cannot launch itself");
    std::vector<std::string> args = {"/proc/self/exe"};
    args.insert(args.end(), command.begin(), command.end());
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) throw std::runtime_error("cannot find this program's path (/proc/self/exe)");
    exe[n] = '\0';
    fmt::print("llm launch: {} processes, rendezvous {}:{}, {} threads each\n", nproc, addr, port,
               std::max<int64_t>(1, std::thread::hardware_concurrency() / nproc));
    std::fflush(stdout);
    for (int64_t rank = 0; rank < nproc; ++rank) {
      const pid_t pid = fork();
      if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
      if (pid == 0) {
        setenv("RANK", std::to_string(rank).c_str(), 1);
        setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
        setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
        setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
        setenv("MASTER_ADDR", addr.c_str(), 1);
        setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
        execv(exe, cargv.data());
        std::fprintf(stderr, "llm launch: cannot run %s: %s\n", exe, std::strerror(errno));
        _exit(127);
      }
      g_children.push_back(pid);
    }
    signal(SIGINT, forward_signal);
    signal(SIGTERM, forward_signal);
    int first_failure = 0;
    size_t alive = g_children.size();
    while (alive > 0) {
      int status = 0;
      const pid_t pid = wait(&status);
      if (pid < 0) {
        if (errno == EINTR) continue;
        break;
      }
      --alive;
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code != 0 && first_failure == 0) {
        first_failure = code;
        fmt::print(stderr, "llm launch: a process exited with status {}; stopping the others\n", code);
        for (pid_t other : g_children) {
          if (other != pid) kill(other, SIGTERM);
        }
      }
    }
    return first_failure;
  });
}

}  // namespace llm::cli
