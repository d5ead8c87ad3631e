/*
 * cpg_e2e: the corosync side of the end-to-end benchmark, a small libcpg client.
 * The totemd side is benches/src/bin/e2e_client.rs; both take the same arguments and print the
 * same single `key=value` line, which benches/e2e/run parses.
 *
 *   cpg_e2e tput NODES SIZE SECS     every node sends SIZE-byte agreed messages as fast as the
 *                                    daemon accepts them; prints the agreed deliveries this node
 *                                    received per second and MB/s over SECS
 *   cpg_e2e lat NODES RATE SECS      sends timestamped messages at RATE/s; prints self-delivery
 *                                    latency p50/p99/p99.9 (us), the longest gap between two
 *                                    deliveries (ms) and the time of the first membership change
 *                                    (unix ns, 0 if none)
 *
 * Both first wait until NODES members are in the group, so every node measures the same window.
 */
#include <corosync/cpg.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GROUP_NAME "e2e"
#define MAX_SAMPLES 4000000

static uint32_t members_now;
static uint64_t delivered, delivered_bytes;
static uint64_t last_delivery_ns, max_gap_ns, first_confchg_ns;
static int measuring;
static uint32_t my_nodeid, my_pid;
static uint64_t *samples;
static size_t nsamples;

static uint64_t now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_deliver(cpg_handle_t h, const struct cpg_name *group, uint32_t nodeid, uint32_t pid,
		       void *msg, size_t len)
{
	(void)h;
	(void)group;
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	if (!measuring)
		return;
	delivered++;
	delivered_bytes += len;
	if (last_delivery_ns && now - last_delivery_ns > max_gap_ns)
		max_gap_ns = now - last_delivery_ns;
	last_delivery_ns = now;
	if (nodeid == my_nodeid && pid == my_pid && len >= sizeof(uint64_t) && nsamples < MAX_SAMPLES) {
		uint64_t sent;
		memcpy(&sent, msg, sizeof sent);
		if (sent)
			samples[nsamples++] = now - sent;
	}
}

static void on_confchg(cpg_handle_t h, const struct cpg_name *group,
		       const struct cpg_address *members, size_t n_members,
		       const struct cpg_address *left, size_t n_left,
		       const struct cpg_address *joined, size_t n_joined)
{
	(void)h;
	(void)group;
	(void)members;
	(void)left;
	(void)joined;
	(void)n_joined;
	members_now = (uint32_t)n_members;
	if (measuring && n_left && !first_confchg_ns)
		first_confchg_ns = now_ns(CLOCK_REALTIME);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(double p)
{
	if (!nsamples)
		return 0;
	size_t i = (size_t)(p * (double)(nsamples - 1));
	return (double)samples[i] / 1000.0;
}

static void dispatch_for(cpg_handle_t h, int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	if (poll(&pfd, 1, timeout_ms) > 0)
		cpg_dispatch(h, CS_DISPATCH_ALL);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: cpg_e2e tput NODES SIZE SECS | lat NODES RATE SECS\n");
		return 2;
	}
	int tput = strcmp(argv[1], "tput") == 0;
	uint32_t nodes = (uint32_t)atoi(argv[2]);
	long arg = atol(argv[3]);
	double secs = atof(argv[4]);
	cpg_callbacks_t cb = { .cpg_deliver_fn = on_deliver, .cpg_confchg_fn = on_confchg };
	cpg_handle_t h;
	cs_error_t err;
	while ((err = cpg_initialize(&h, &cb)) != CS_OK) {
		if (err != CS_ERR_TRY_AGAIN && err != CS_ERR_LIBRARY) {
			fprintf(stderr, "cpg_initialize: %d\n", err);
			return 1;
		}
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
	}
	cpg_local_get(h, &my_nodeid);
	my_pid = (uint32_t)getpid();
	struct cpg_name name;
	strcpy(name.value, GROUP_NAME);
	name.length = (uint32_t)strlen(GROUP_NAME);
	while ((err = cpg_join(h, &name)) == CS_ERR_TRY_AGAIN)
		;
	if (err != CS_OK) {
		fprintf(stderr, "cpg_join: %d\n", err);
		return 1;
	}
	int fd;
	cpg_fd_get(h, &fd);
	uint64_t deadline = now_ns(CLOCK_MONOTONIC) + 60ull * 1000000000ull;
	while (members_now < nodes) {
		if (now_ns(CLOCK_MONOTONIC) > deadline) {
			fprintf(stderr, "only %u of %u members joined\n", members_now, nodes);
			return 1;
		}
		dispatch_for(h, fd, 100);
	}
	samples = calloc(MAX_SAMPLES, sizeof *samples);
	size_t size = tput ? (size_t)arg : 64;
	char *buf = calloc(1, size < 64 ? 64 : size);
	if (!samples || !buf)
		return 1;
	struct iovec iov = { .iov_base = buf, .iov_len = size };
	measuring = 1;
	uint64_t start = now_ns(CLOCK_MONOTONIC);
	uint64_t end = start + (uint64_t)(secs * 1e9);
	uint64_t interval = tput ? 0 : (uint64_t)(1e9 / (double)arg);
	uint64_t next = start;
	while (now_ns(CLOCK_MONOTONIC) < end) {
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		if (now >= next) {
			uint64_t stamp = now;
			memcpy(buf, &stamp, sizeof stamp);
			err = cpg_mcast_joined(h, CPG_TYPE_AGREED, &iov, 1);
			if (err == CS_OK) {
				next = interval ? next + interval : now;
			} else if (err != CS_ERR_TRY_AGAIN) {
				fprintf(stderr, "cpg_mcast_joined: %d\n", err);
				return 1;
			}
			if (interval && next < now)
				next = now; /* do not burst to catch up after a stall */
			cpg_dispatch(h, CS_DISPATCH_ALL);
			if (err == CS_ERR_TRY_AGAIN)
				dispatch_for(h, fd, 1);
		} else {
			uint64_t wait_ms = (next - now) / 1000000;
			dispatch_for(h, fd, wait_ms > 0 ? (int)wait_ms : 0);
		}
	}
	double elapsed = (double)(now_ns(CLOCK_MONOTONIC) - start) / 1e9;
	measuring = 0;
	qsort(samples, nsamples, sizeof *samples, cmp_u64);
	printf("msgs_per_s=%.1f mb_per_s=%.3f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_gap_ms=%.1f "
	       "confchg_unix_ns=%" PRIu64 " samples=%zu\n",
	       (double)delivered / elapsed, (double)delivered_bytes / elapsed / 1e6, pct(0.50),
	       pct(0.99), pct(0.999), (double)max_gap_ns / 1e6, first_confchg_ns, nsamples);
	cpg_finalize(h);
	return 0;
}
