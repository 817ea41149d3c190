/*
 * The baseline of bench_api: a bare libmicrohttpd server that answers
 * every request with the same fixed JSON body (a two-account list shaped
 * like finxd's, about 1 KB).  No database, no JSON building, no
 * authentication: what is left of a request is libmicrohttpd and the
 * kernel.  Its threading mode is libmicrohttpd's fastest on this machine
 * (issue 13: measure against the fastest bare configuration):
 *
 *   bare_mhd PORT [MODE]   listen on 127.0.0.1:PORT until SIGTERM/SIGINT
 *
 * MODE: epoll (the default: two epoll event loops, MHD_USE_TURBO, as
 * finxd's front minus the suspend/resume channel), epoll-plain (the same
 * without turbo), threads (a thread per connection, finxd's mode until
 * 2026-12).  tests/bench/README.md has the figures of each.
 */
#include <microhttpd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static const char body[] =
    "{\"accounts\":[{\"account_id\":\"0b7c9f0e-3f5e-4c7a-9a57-2f1d3c4b5a60\","
    "\"connection_id\":\"5d2e1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b\","
    "\"user_id\":\"u-bench\",\"finx_account_id\":\"A123456.1\","
    "\"access_id\":\"X123456.1\",\"iban\":\"DE89900900420123456789\","
    "\"bic\":\"DEMODE01XXX\",\"name\":\"Giro account\",\"type\":\"Giro "
    "account\",\"currency\":\"EUR\",\"owner\":\"J\\u00fcrgen M\\u00fcller\","
    "\"bank_name\":\"Demobank\",\"balance\":{\"amount\":\"20989.14\","
    "\"currency\":\"EUR\",\"balance_date\":\"2026-11-26T16:00:00Z\","
    "\"fetched_at\":\"2026-11-26T16:00:01Z\"},\"updated_at\":"
    "\"2026-11-26T16:00:01Z\"},{\"account_id\":\"1c8d0a1f-4a6f-4d8b-8b68-"
    "3a2e4d5c6b71\",\"connection_id\":\"5d2e1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c"
    "0b\",\"user_id\":\"u-bench\",\"finx_account_id\":\"A123456.2\","
    "\"access_id\":\"X123456.1\",\"iban\":null,\"bic\":null,\"name\":"
    "\"Credit card\",\"type\":\"Credit card\",\"currency\":\"EUR\","
    "\"owner\":\"J\\u00fcrgen M\\u00fcller\",\"bank_name\":\"Demobank\","
    "\"balance\":{\"amount\":\"-4412.61\",\"currency\":\"EUR\","
    "\"balance_date\":\"2026-11-26T16:00:00Z\",\"fetched_at\":"
    "\"2026-11-26T16:00:01Z\"},\"updated_at\":\"2026-11-26T16:00:01Z\"}]}";

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_size, void **state)
{
	static int first;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload_data;
	if (*state == NULL) {
		*state = &first;
		return MHD_YES;
	}
	*upload_size = 0;
	resp = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body,
	    MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(resp, "Content-Type",
	    "application/json; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static struct MHD_Daemon *
start(const char *mode, struct sockaddr_in *sa)
{
	if (strcmp(mode, "threads") == 0)
		return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
			MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
			MHD_USE_ERROR_LOG | MHD_USE_ITC,
		    0, NULL, NULL, on_request, NULL,
		    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)sa,
		    MHD_OPTION_CONNECTION_LIMIT, (unsigned)2048,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
		    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
		    MHD_OPTION_THREAD_STACK_SIZE, (size_t)(256 * 1024),
		    MHD_OPTION_END);
	if (strcmp(mode, "epoll") != 0 && strcmp(mode, "epoll-plain") != 0)
		return NULL;
	return MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD |
		MHD_USE_ERROR_LOG |
		(strcmp(mode, "epoll") == 0 ? MHD_USE_TURBO : 0),
	    0, NULL, NULL, on_request, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)sa,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)2048,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
	    MHD_OPTION_END);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sa;
	struct MHD_Daemon *d;
	struct sigaction act;
	int port;
	char *end = NULL;

	/* Never outlive the benchmark that started us. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (argc < 2 || argc > 3 ||
	    (port = (int)strtol(argv[1], &end, 10)) <= 0 || *end != '\0' ||
	    port > 65535) {
		fprintf(stderr, "usage: bare_mhd PORT [epoll|epoll-plain|"
				"threads]\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memset(&act, 0, sizeof(act));
	act.sa_handler = on_signal;
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	d = start(argc == 3 ? argv[2] : "epoll", &sa);
	if (d == NULL) {
		fprintf(stderr, "bare_mhd: cannot listen on port %d (mode %s)\n",
		    port, argc == 3 ? argv[2] : "epoll");
		return 1;
	}
	while (!stop)
		sleep(1); /* a signal cuts it short */
	MHD_stop_daemon(d);
	return 0;
}
