/*
 * zombies: how fast does an init reap a burst of orphaned zombies?
 *
 *   zombies burst N OUT
 *       Runs as the init's child and stays alive (the inits exit when their
 *       child does). A "holder" process forks N children that exit at once;
 *       the holder does not reap them, so they are N zombies. When all N are
 *       zombies the holder exits and the kernel reparents all of them to the
 *       init in one go. The clock starts when the holder is told to exit and
 *       stops when none of the N pids exists any more (kill(pid, 0) fails
 *       with ESRCH only once a zombie has been reaped). Then it scans this
 *       namespace's /proc for any zombie at all, writes
 *       "reap_ms=... reparent_ms=... init_cpu_ms=... zombies_left=... n=..."
 *       to OUT and exits. init_cpu_ms is the CPU time the init (PID 1 here)
 *       used meanwhile, from /proc/1/task/<tid>/schedstat: its cost, which
 *       depends less than the wall time on what else the machine does.
 *
 *   zombies count PID
 *       Runs on the host: prints how many zombies have parent PID.
 *
 * Why not time sigrec --orphans: sigrec makes its orphans one by one with
 * two forks each, and they trickle to the init while it forks; its run
 * time is the fork rate, whichever init reaps. Dropping all N zombies on
 * the init at once times the init's reaping loop alone.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A reaping loop that takes longer than this is broken, not slow. */
#define GIVE_UP_NS (60LL * 1000000000)

static void die(const char *what)
{
	fprintf(stderr, "zombies: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Zombies in /proc whose parent is `parent` (any parent when 0). */
static long count_zombies(pid_t parent)
{
	DIR *d = opendir("/proc");
	if (!d)
		die("/proc");
	long n = 0;
	struct dirent *e;
	char path[300], buf[512];
	while ((e = readdir(d))) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue; /* gone since readdir: reaped, so not a zombie */
		size_t len = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[len] = 0;
		/* comm may hold spaces and ')': fields follow the last ')'. */
		char *p = strrchr(buf, ')');
		char state;
		int ppid;
		if (p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && state == 'Z' &&
		    (parent == 0 || ppid == parent))
			n++;
	}
	closedir(d);
	return n;
}

/* vfork: no page tables to copy, so the set-up stays short. The child
 * only calls _exit, so sharing this stack frame is safe. */
static pid_t __attribute__((noinline)) spawn_exiting(void)
{
	pid_t p = vfork();
	if (p == 0)
		_exit(0);
	return p;
}

/* On-CPU time of all threads of PID 1 of this namespace, in ns. */
static int64_t init_cpu_ns(void)
{
	DIR *d = opendir("/proc/1/task");
	if (!d)
		return -1;
	int64_t sum = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300];
		snprintf(path, sizeof path, "/proc/1/task/%.20s/schedstat", e->d_name);
		FILE *f = fopen(path, "re");
		long long ns;
		if (f && fscanf(f, "%lld", &ns) == 1)
			sum += ns;
		if (f)
			fclose(f);
	}
	closedir(d);
	return sum;
}

static void holder_main(long n, pid_t *pids, int ready, int go)
{
	for (long i = 0; i < n; i++) {
		pid_t p = spawn_exiting();
		if (p < 0)
			die("vfork (is kernel.pid_max or ulimit -u too low?)");
		pids[i] = p;
	}
	/* vfork returns once the child has released its memory, a little
	 * before it is a zombie; WNOWAIT waits for that without reaping. */
	for (long i = 0; i < n; i++) {
		siginfo_t info;
		while (waitid(P_PID, (id_t)pids[i], &info, WEXITED | WNOWAIT) < 0)
			if (errno != EINTR)
				die("waitid");
	}
	if (write(ready, "r", 1) != 1)
		die("write");
	char c;
	/* EOF when the main process closes its end: the starting gun. */
	while (read(go, &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

static int burst_main(long n, const char *out)
{
	/* Inherited SIG_IGN for SIGCHLD would make the kernel reap the
	 * holder's children itself: no zombies to measure. */
	signal(SIGCHLD, SIG_DFL);
	pid_t *pids = mmap(NULL, (size_t)n * sizeof *pids, PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (pids == MAP_FAILED)
		die("mmap");
	int ready[2], go[2];
	if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
		die("pipe");
	pid_t holder = fork();
	if (holder < 0)
		die("fork");
	if (holder == 0) {
		signal(SIGCHLD, SIG_DFL);
		close(ready[0]);
		close(go[1]);
		holder_main(n, pids, ready[1], go[0]);
	}
	close(ready[1]);
	close(go[0]);
	char c;
	if (read(ready[0], &c, 1) != 1) {
		fprintf(stderr, "zombies: the holder failed before making %ld zombies\n", n);
		return 1;
	}
	int64_t cpu0 = init_cpu_ns();
	int64_t t0 = now_ns();
	close(go[1]);
	/* The holder's exit reparents its children before it becomes a
	 * zombie itself, so once it is reaped all N belong to the init. */
	if (waitpid(holder, NULL, 0) != holder)
		die("waitpid");
	int64_t t1 = now_ns();
	struct timespec nap = { 0, 20000 };
	for (long i = 0; i < n; i++) {
		while (kill(pids[i], 0) == 0) {
			if (now_ns() - t0 > GIVE_UP_NS) {
				fprintf(stderr, "zombies: %ld of %ld still unreaped after 60 s\n",
					n - i, n);
				return 1;
			}
			nanosleep(&nap, NULL);
		}
	}
	int64_t t2 = now_ns();
	int64_t cpu1 = init_cpu_ns();
	long left = count_zombies(0);
	FILE *f = fopen(out, "w");
	if (!f)
		die(out);
	fprintf(f, "reap_ms=%.3f reparent_ms=%.3f init_cpu_ms=%.3f zombies_left=%ld n=%ld\n",
		(t2 - t0) / 1e6, (t1 - t0) / 1e6,
		cpu0 < 0 || cpu1 < 0 ? -1.0 : (cpu1 - cpu0) / 1e6, left, n);
	fclose(f);
	return left == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "burst")) {
		long n = strtol(argv[2], NULL, 10);
		if (n < 1) {
			fprintf(stderr, "zombies: N must be at least 1\n");
			return 2;
		}
		return burst_main(n, argv[3]);
	}
	if (argc == 3 && !strcmp(argv[1], "count")) {
		printf("%ld\n", count_zombies((pid_t)strtol(argv[2], NULL, 10)));
		return 0;
	}
	fprintf(stderr, "usage: zombies burst N OUT\n       zombies count PID\n");
	return 2;
}
