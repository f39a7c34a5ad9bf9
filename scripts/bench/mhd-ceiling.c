/*
 * mhd-ceiling: the most a libmicrohttpd listener can do on this machine, for
 * scripts/bench/ingest. It reads each POST body (up to 1 MiB) and answers
 * 200 with a small JSON body; no parsing, no queue, no disk. Same threading
 * as the webhook listener: libmicrohttpd's epoll threads, one per CPU.
 *
 *	mhd-ceiling     prints "port N", serves until SIGTERM or SIGINT
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BODY_MAX (1u << 20)

struct body {
	size_t len, alloc;
	char *data;
};

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

int main(void)
{
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
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD, 0, NULL, NULL, on_request, NULL,
			     MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(ncpu > 0 ? ncpu : 1),
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
	MHD_stop_daemon(d);
	return 0;
}
