/*
 * mhd-ceiling: the most a libmicrohttpd listener can do on this machine, for
 * scripts/bench/ingest. It reads each POST body (up to 1 MiB) and answers
 * 200 with a small JSON body; no parsing, no queue, no disk. Same threading
 * as the webhook listener: libmicrohttpd's epoll threads, one per CPU.
 *
 *	mhd-ceiling [--suspend | --block THREADS] [--sync FILE]
 *
 * Prints "port N" and serves until SIGTERM or SIGINT. The options add the
 * listener's model one part at a time, to show what each part costs before
 * any parsing or SQLite: --suspend hands every finished request to one
 * committer thread that resumes each batch with its answer (the listener's
 * suspend/resume); --sync FILE also appends the batch's bodies to FILE and
 * fdatasyncs it before answering (group commit, the cheapest durable store).
 * --block is the model without suspend/resume, for comparison: THREADS
 * libmicrohttpd threads, each waiting in the access handler for the group
 * commit that holds its request, led by the first waiter to find none
 * under way.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define BODY_MAX (1u << 20)

struct body {
	size_t len, alloc;
	char *data;
	struct MHD_Connection *conn;
	struct body *next;
	int state; /* 0 reading, 1 handed to the committer, 2 committed */
};

static int use_suspend;
static unsigned block_threads; /* --block: 0 when off */
static int sync_fd = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static struct body *pending;
static int stopping;
static unsigned long long commits, committed;
/* --block: group commits are numbered; the one under way, and the last done. */
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static unsigned long long group_next = 1, group_done;
static int leading;

static void store(struct body *batch);

/* --block: waits until b is stored, storing the group itself when no one else is. */
static void group_commit(struct body *b)
{
	unsigned long long mine;

	pthread_mutex_lock(&lock);
	b->next = pending;
	pending = b;
	mine = group_next;
	while (group_done < mine) {
		struct body *batch;
		if (leading) {
			pthread_cond_wait(&done_cv, &lock);
			continue;
		}
		/* Lead: everything pending now is group `mine`; later arrivals are the next. */
		batch = pending;
		pending = NULL;
		leading = 1;
		group_next++;
		pthread_mutex_unlock(&lock);
		store(batch);
		pthread_mutex_lock(&lock);
		leading = 0;
		group_done = mine;
		commits++;
		pthread_cond_broadcast(&done_cv);
	}
	committed++;
	pthread_mutex_unlock(&lock);
	b->state = 2;
}

/* Keeps the body as the listener does (a growable buffer), so the comparison is fair. */
static int body_add(struct body *b, const char *data, size_t n)
{
	if (b->len + n > BODY_MAX)
		return -1;
	if (b->len + n > b->alloc) {
		size_t a = b->alloc ? b->alloc : 4096;
		char *p;
		while (a < b->len + n)
			a *= 2;
		if (!(p = realloc(b->data, a)))
			return -1;
		b->data = p;
		b->alloc = a;
	}
	memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *size, void **ctx)
{
	static const char ok[] = "{\"events\":1,\"jobs\":1}\n";
	struct body *b = *ctx;
	struct MHD_Response *r;
	enum MHD_Result res;

	(void)cls, (void)url, (void)method, (void)version;
	if (!b) {
		*ctx = b = calloc(1, sizeof(*b));
		return b ? MHD_YES : MHD_NO;
	}
	if (*size) {
		if (body_add(b, data, *size) < 0)
			return MHD_NO;
		*size = 0;
		return MHD_YES;
	}
	if (block_threads && b->state == 0)
		group_commit(b);
	if (use_suspend && b->state == 0) {
		b->conn = c;
		b->state = 1;
		MHD_suspend_connection(c);
		pthread_mutex_lock(&lock);
		b->next = pending;
		pending = b;
		pthread_cond_signal(&work);
		pthread_mutex_unlock(&lock);
		return MHD_YES;
	}
	r = MHD_create_response_from_buffer(sizeof(ok) - 1, (void *)ok, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	res = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return res;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx,
			 enum MHD_RequestTerminationCode toe)
{
	struct body *b = *ctx;

	(void)cls, (void)c, (void)toe;
	if (b)
		free(b->data);
	free(b);
	*ctx = NULL;
}

/* Appends the bodies of a batch to the sync file and flushes it (with --sync). */
static void store(struct body *batch)
{
	struct iovec iov[1024];
	struct body *b;
	int n = 0;

	if (sync_fd < 0)
		return;
	for (b = batch; b; b = b->next) {
		iov[n].iov_base = b->data;
		iov[n++].iov_len = b->len;
		if (n == 1024 || !b->next) {
			if (writev(sync_fd, iov, n) < 0)
				perror("mhd-ceiling: writev");
			n = 0;
		}
	}
	if (fdatasync(sync_fd) < 0)
		perror("mhd-ceiling: fdatasync");
}

/* Takes every pending request, stores their bodies if asked, then resumes them. */
static void *committer(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		struct body *batch, *b, *next;

		while (!pending && !stopping)
			pthread_cond_wait(&work, &lock);
		if (!pending)
			break;
		batch = pending;
		pending = NULL;
		pthread_mutex_unlock(&lock);
		store(batch);
		commits++;
		for (b = batch; b; b = next) {
			next = b->next;
			b->state = 2;
			committed++;
			MHD_resume_connection(b->conn);
		}
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD;
	pthread_t tc;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const union MHD_DaemonInfo *info;
	struct MHD_Daemon *d;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--block") && i + 1 < argc) {
			block_threads = (unsigned)strtoul(argv[++i], NULL, 10);
			if (!block_threads) {
				fprintf(stderr, "mhd-ceiling: --block needs a thread count\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "--suspend")) {
			use_suspend = 1;
		} else if (!strcmp(argv[i], "--sync") && i + 1 < argc) {
			sync_fd = open(argv[++i], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
				       0600);
			if (sync_fd < 0) {
				perror(argv[i]);
				return 1;
			}
		} else {
			fprintf(stderr,
				"usage: mhd-ceiling [--suspend | --block THREADS] [--sync FILE]\n");
			return 2;
		}
	}
	if ((sync_fd >= 0 && !use_suspend && !block_threads) || (use_suspend && block_threads)) {
		fprintf(stderr, "mhd-ceiling: --sync needs --suspend or --block, not both\n");
		return 2;
	}
	if (use_suspend) {
		flags |= MHD_ALLOW_SUSPEND_RESUME;
		pthread_create(&tc, NULL, committer, NULL);
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL,
			     MHD_OPTION_THREAD_POOL_SIZE,
			     block_threads ? block_threads : (unsigned)(ncpu > 0 ? ncpu : 1),
			     MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_NOTIFY_COMPLETED,
			     on_completed, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "mhd-ceiling: cannot start\n");
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	printf("port %u\n", info ? info->port : 0);
	fflush(stdout);
	sigwait(&set, &sig);
	if (block_threads) {
		printf("accepted=%llu\ncommits=%llu\n", committed, commits);
		if (sync_fd >= 0)
			printf("queued=%llu\n", committed);
	}
	if (use_suspend) {
		pthread_mutex_lock(&lock);
		stopping = 1;
		pthread_cond_signal(&work);
		pthread_mutex_unlock(&lock);
		pthread_join(tc, NULL);
		printf("accepted=%llu\ncommits=%llu\n", committed, commits);
		if (sync_fd >= 0)
			printf("queued=%llu\n", committed);
	}
	MHD_stop_daemon(d);
	if (sync_fd >= 0)
		close(sync_fd);
	return 0;
}
