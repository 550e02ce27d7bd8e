/*
 * sigstamp: measures how long an init takes to forward SIGUSR1 to its child.
 *
 *   sigstamp recv FIFO COUNT
 *       Runs as the init's child. Blocks SIGUSR1, then for each of COUNT
 *       signals: sigwaitinfo, CLOCK_MONOTONIC, write the stamp to FIFO.
 *       Exits after COUNT signals, once the sender has closed the FIFO, so
 *       the init exits on its own (no SIGTERM, which drainit would hold
 *       back for its drain delay).
 *
 *   sigstamp send PID FIFO COUNT WARMUP GAP_US RAW_OUT
 *       Runs on the host. Stamps CLOCK_MONOTONIC, kill(PID, SIGUSR1), then
 *       waits for the child's stamp before the next signal, so signals never
 *       coalesce. The first WARMUP samples are dropped (page faults, lazy
 *       binding); the rest go to RAW_OUT in ns, and "median_us p99_us n
 *       cpu_ns" is printed on stdout, cpu_ns being the CPU time all of
 *       PID's threads used meanwhile (/proc/PID/task/<tid>/schedstat): what
 *       forwarding costs the init, which depends less than latency on what
 *       else the machine is doing.
 *
 * CLOCK_MONOTONIC is per boot, not per PID namespace, so stamps taken on
 * both sides of the namespace compare directly.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A signal that is not observed within this long was lost, not slow. */
#define LOST_MS 2000

static void die(const char *what)
{
	fprintf(stderr, "sigstamp: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* On-CPU time of all threads of pid, in ns; -1 if unknown. */
static int64_t task_cpu_ns(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int64_t sum = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char stat[300];
		snprintf(stat, sizeof stat, "%s/%.20s/schedstat", path, e->d_name);
		FILE *f = fopen(stat, "re");
		long long ns;
		if (f && fscanf(f, "%lld", &ns) == 1)
			sum += ns;
		if (f)
			fclose(f);
	}
	closedir(d);
	return sum;
}

static long number(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < 0) {
		fprintf(stderr, "sigstamp: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

static int recv_main(const char *fifo, long count)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	/* Blocked before the FIFO is opened: the sender cannot open its end,
	 * and so cannot send, until we are ready to take the signal. */
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		die("sigprocmask");
	int fd = open(fifo, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die(fifo);
	for (long i = 0; i < count; i++) {
		siginfo_t info;
		while (sigwaitinfo(&set, &info) < 0)
			if (errno != EINTR)
				die("sigwaitinfo");
		int64_t t = now_ns();
		if (write(fd, &t, sizeof t) != sizeof t)
			die("write");
	}
	/* Stay until the sender has closed its end of the FIFO (POLLERR): it
	 * reads the init's CPU time after the last stamp, and the init exits
	 * as soon as we do. */
	struct pollfd p = { .fd = fd, .events = 0 };
	poll(&p, 1, LOST_MS);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int send_main(pid_t pid, const char *fifo, long count, long warmup,
		     long gap_us, const char *raw_out)
{
	if (count < 1) {
		fprintf(stderr, "sigstamp: COUNT must be at least 1\n");
		return 2;
	}
	int fd = open(fifo, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(fifo);
	int64_t *lat = calloc((size_t)count, sizeof *lat);
	if (!lat)
		die("calloc");
	struct timespec gap = { gap_us / 1000000, (gap_us % 1000000) * 1000 };
	int64_t cpu0 = 0;
	for (long i = 0; i < warmup + count; i++) {
		if (i == warmup)
			cpu0 = task_cpu_ns(pid);
		/* A pause between signals, so each one finds the init asleep
		 * as a real signal would, not still running from the last one. */
		nanosleep(&gap, NULL);
		int64_t sent = now_ns();
		if (kill(pid, SIGUSR1))
			die("kill");
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, LOST_MS);
		if (r == 0) {
			fprintf(stderr, "sigstamp: signal %ld not observed within %d ms\n",
				i, LOST_MS);
			return 1;
		}
		int64_t seen;
		if (r < 0 || read(fd, &seen, sizeof seen) != sizeof seen) {
			fprintf(stderr, "sigstamp: receiver went away after %ld signals\n", i);
			return 1;
		}
		if (i >= warmup)
			lat[i - warmup] = seen - sent;
	}
	int64_t cpu1 = task_cpu_ns(pid);
	FILE *raw = fopen(raw_out, "w");
	if (!raw)
		die(raw_out);
	for (long i = 0; i < count; i++)
		fprintf(raw, "%lld\n", (long long)lat[i]);
	fclose(raw);
	qsort(lat, (size_t)count, sizeof *lat, cmp);
	/* Nearest-rank percentiles: always a value that was measured. */
	long p50 = (count * 50 + 99) / 100 - 1, p99 = (count * 99 + 99) / 100 - 1;
	printf("%.1f %.1f %ld %lld\n", lat[p50] / 1e3, lat[p99] / 1e3, count,
	       (long long)(cpu0 < 0 || cpu1 < 0 ? -1 : cpu1 - cpu0));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "recv"))
		return recv_main(argv[2], number(argv[3], "COUNT"));
	if (argc == 8 && !strcmp(argv[1], "send"))
		return send_main((pid_t)number(argv[2], "PID"), argv[3],
				 number(argv[4], "COUNT"), number(argv[5], "WARMUP"),
				 number(argv[6], "GAP_US"), argv[7]);
	fprintf(stderr, "usage: sigstamp recv FIFO COUNT\n"
			"       sigstamp send PID FIFO COUNT WARMUP GAP_US RAW_OUT\n");
	return 2;
}
