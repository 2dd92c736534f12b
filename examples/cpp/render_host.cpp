/*
 * render_host: a render engine that lends its GPU to the network while its
 * user is not rendering, through the C++ API (tessera.hpp).
 *
 * The engine keeps its own main loop. Each frame it does the network work
 * that is ready (Runtime::step(0)), "renders" (a busy loop standing in for
 * the engine's own GPU work) when its user renders, then waits for the rest
 * of the frame with poll() on the runtime's descriptor, waking early for the
 * network or the runtime's next timer. While the user renders it calls
 * set_accepting_jobs(false), so offers are declined (jobs already taken run
 * on); when the user stops, set_accepting_jobs(true). SIGINT or SIGTERM
 * drains: jobs in flight finish, nothing new is taken, goodbye; a second
 * signal quits at once. A status line goes to standard output now and then,
 * the library's log lines to standard error.
 *
 *   render_host CONFIG.toml [options]
 *
 *   CONFIG.toml        the operator's file (README, "The operator program"):
 *                      coordinator, TLS trust, device key, store, pricing
 *   --fps N            frames per second of the main loop (default 60)
 *   --render-ms N      milliseconds of "rendering" per frame while the user
 *                      renders (default 10; at most the frame's time)
 *   --render FROM:TO   the user renders from second FROM to second TO after
 *                      start (repeatable)
 *   --render-after-frames N --render-frames M
 *                      the user renders frames N to N + M - 1 (from 0)
 *   --status-every S   a status line every S seconds (default 5)
 *   --drain-after S    drain after S seconds, as on SIGINT
 *   --quiet            no library log lines
 *
 * SIGUSR1 toggles the user's rendering by hand (on until the next SIGUSR1,
 * whatever the schedule says).
 *
 * Build it with CMake against an installed library (examples/CMakeLists.txt:
 * find_package(tessera), then link tessera::cxx).
 */
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <tessera.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

volatile std::sig_atomic_t stop_signals = 0;
volatile std::sig_atomic_t toggles = 0;

extern "C" void on_stop(int) { stop_signals = stop_signals + 1; }
extern "C" void on_toggle(int) { toggles = toggles + 1; }

extern "C" void on_log(void *, std::uint32_t level, const char *target, const char *message)
{
    static const char *const names[] = {"", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    std::fprintf(stderr, "%-5s %s: %s\n", level <= 5 ? names[level] : "?", target, message);
}

struct Window {
    double from_s;
    double to_s;
};

struct Options {
    std::string config;
    int fps = 60;
    int render_ms = 10;
    std::vector<Window> windows;
    long render_after_frames = -1;
    long render_frames = 0;
    double status_every_s = 5;
    double drain_after_s = -1;
    bool quiet = false;
};

[[noreturn]] void usage(const char *why)
{
    if (why)
        std::fprintf(stderr, "render_host: %s\n", why);
    std::fprintf(stderr,
                 "usage: render_host CONFIG.toml [--fps N] [--render-ms N] [--render FROM:TO]...\n"
                 "                   [--render-after-frames N --render-frames M]\n"
                 "                   [--status-every S] [--drain-after S] [--quiet]\n");
    std::exit(2);
}

double number(const char *flag, const char *text)
{
    char *end = nullptr;
    const double v = std::strtod(text, &end);
    if (!end || *end != '\0' || v < 0) {
        std::fprintf(stderr, "render_host: %s: not a number: %s\n", flag, text);
        std::exit(2);
    }
    return v;
}

Options parse(int argc, char **argv)
{
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc)
                usage((a + " needs a value").c_str());
            return argv[++i];
        };
        if (a == "--fps") {
            o.fps = static_cast<int>(number("--fps", value()));
        } else if (a == "--render-ms") {
            o.render_ms = static_cast<int>(number("--render-ms", value()));
        } else if (a == "--render") {
            const std::string w = value();
            const auto colon = w.find(':');
            if (colon == std::string::npos)
                usage("--render takes FROM:TO (seconds)");
            o.windows.push_back(Window{number("--render", w.substr(0, colon).c_str()),
                                       number("--render", w.substr(colon + 1).c_str())});
        } else if (a == "--render-after-frames") {
            o.render_after_frames = static_cast<long>(number(a.c_str(), value()));
        } else if (a == "--render-frames") {
            o.render_frames = static_cast<long>(number(a.c_str(), value()));
        } else if (a == "--status-every") {
            o.status_every_s = number(a.c_str(), value());
        } else if (a == "--drain-after") {
            o.drain_after_s = number(a.c_str(), value());
        } else if (a == "--quiet") {
            o.quiet = true;
        } else if (a == "-h" || a == "--help") {
            usage(nullptr);
        } else if (!a.empty() && a[0] == '-') {
            usage(("unknown option " + a).c_str());
        } else if (o.config.empty()) {
            o.config = a;
        } else {
            usage("one configuration file only");
        }
    }
    if (o.config.empty())
        usage("no configuration file");
    if (o.fps < 1 || o.fps > 1000)
        usage("--fps must be 1 to 1000");
    return o;
}

/* Whether the user renders in frame `frame`, `elapsed` seconds after start. */
bool scheduled(const Options &o, long frame, double elapsed)
{
    if (o.render_after_frames >= 0 && frame >= o.render_after_frames &&
        frame < o.render_after_frames + o.render_frames)
        return true;
    return std::any_of(o.windows.begin(), o.windows.end(),
                       [&](const Window &w) { return elapsed >= w.from_s && elapsed < w.to_s; });
}

/* The engine's own work for a frame: the CPU stands in for the GPU here. */
void render(milliseconds budget)
{
    const auto until = Clock::now() + budget;
    volatile double x = 1.0;
    while (Clock::now() < until)
        for (int i = 0; i < 1000; i++)
            x = x * 1.0000001 + 0.0000001;
}

void print_status(const tessera::Runtime &rt, long frame, const char *what)
{
    std::printf("[frame %ld] %s%s\n", frame, what, rt.status_line().c_str());
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char **argv)
{
    const Options o = parse(argc, argv);
    if (!o.quiet)
        tessera_set_log_callback(on_log, nullptr, TESSERA_LOG_INFO);

    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sa.sa_handler = on_toggle;
    sigaction(SIGUSR1, &sa, nullptr);

    try {
        tessera::Runtime rt(o.config);
        const milliseconds frame_time(1000 / o.fps);
        const milliseconds render_time(std::min<long>(o.render_ms, frame_time.count()));
        const auto start = Clock::now();
        auto next_status = start;
        bool rendering = false;
        bool draining = false;
        long frames = 0, frames_rendered = 0, frames_over_budget = 0;
        std::printf("render_host: %s, %d fps, %ld ms of rendering per frame while the user "
                    "renders\n",
                    rt.status().device.c_str(), o.fps, static_cast<long>(render_time.count()));

        for (long frame = 0; !rt.finished(); frame++) {
            const auto frame_start = Clock::now();
            const double elapsed =
                std::chrono::duration<double>(frame_start - start).count();

            if (stop_signals > 1) {
                std::printf("render_host: second signal, quitting without draining\n");
                break;
            }
            if (!draining && (stop_signals > 0 ||
                              (o.drain_after_s >= 0 && elapsed >= o.drain_after_s))) {
                draining = true;
                rt.drain();
                print_status(rt, frame, "draining: ");
            }

            /* The user's state: the schedule, or SIGUSR1 by hand. */
            const bool user_renders = (toggles % 2 == 1) || scheduled(o, frame, elapsed);
            if (user_renders != rendering) {
                rendering = user_renders;
                rt.set_accepting_jobs(!rendering);
                print_status(rt, frame,
                             rendering ? "user renders: offers declined | "
                                       : "user idle: taking offers | ");
            }

            /* Network work that is ready, then the frame's own work. */
            rt.step(milliseconds(0));
            if (rendering) {
                render(render_time);
                frames_rendered++;
            }

            /* The rest of the frame: wait for the network or the runtime's
             * next timer, whichever comes first, and step when woken. */
            for (;;) {
                const auto now = Clock::now();
                const auto frame_end = frame_start + frame_time;
                if (now >= frame_end)
                    break;
                auto wait = duration_cast<milliseconds>(frame_end - now);
                bool timer = false;
                if (const auto wake = rt.next_wakeup(); wake && *wake < wait) {
                    wait = *wake;
                    timer = true;
                }
                pollfd p{rt.fd(), POLLIN, 0};
                const int ready = poll(&p, 1, static_cast<int>(wait.count()));
                if (ready != 0 || timer)
                    rt.step(milliseconds(0));
                /* Under a millisecond left (or a timer due now): next frame. */
                if (ready <= 0 && wait.count() == 0)
                    break;
            }
            if (Clock::now() - frame_start > frame_time + milliseconds(2))
                frames_over_budget++;
            frames++;

            if (o.status_every_s > 0 && Clock::now() >= next_status) {
                print_status(rt, frame, "");
                next_status = Clock::now() + duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(o.status_every_s));
            }
        }
        print_status(rt, frames, rt.finished() ? "drained: " : "stopped: ");
        std::printf("render_host: %ld frames, %ld rendered, %ld over budget\n", frames,
                    frames_rendered, frames_over_budget);
    } catch (const tessera::Error &e) {
        std::fprintf(stderr, "render_host: %s\n", e.what());
        return 1;
    }
    return 0;
}
