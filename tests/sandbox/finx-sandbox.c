/*
 * finx-sandbox: a local stand-in for the finX (Qwist) API for tests, demos
 * and development. Entry point: command line, loopback-only listening,
 * port file, signal handling and orderly shutdown.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "sbx_config.h"
#include "sbx_http.h"
#include "sbx_state.h"

struct opts {
	char *host; /* as written, without brackets */
	long port;
	const char *port_file;
	const char *public_url;
	struct sockaddr_storage sa;
	bool ipv6;
};

static const struct option longopts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "port-file", required_argument, NULL, 'p' },
	{ "public-url", required_argument, NULL, 'u' },
	{ "client-id", required_argument, NULL, 'i' },
	{ "client-secret", required_argument, NULL, 's' },
	{ "help", no_argument, NULL, 'h' },
	/* The rest are knobs of sbx_config.c, named with '-' for '_'. */
	{ "code-ttl", required_argument, NULL, 0 },
	{ "access-ttl", required_argument, NULL, 0 },
	{ "refresh-ttl", required_argument, NULL, 0 },
	{ "rotate", required_argument, NULL, 0 },
	{ "omit-refresh-token", no_argument, NULL, 0 },
	{ "token-bytes", required_argument, NULL, 0 },
	{ "latency-ms", required_argument, NULL, 0 },
	{ "token-latency-ms", required_argument, NULL, 0 },
	{ "token-latency-min-ms", required_argument, NULL, 0 },
	{ "token-latency-max-ms", required_argument, NULL, 0 },
	{ "rotate-percent", required_argument, NULL, 0 },
	{ "error-style", required_argument, NULL, 0 },
	{ "cancel-param", required_argument, NULL, 0 },
	{ "transactions", required_argument, NULL, 0 },
	{ "sync-step-ms", required_argument, NULL, 0 },
	{ "sync-fail", no_argument, NULL, 0 },
	{ "repeat-transaction", no_argument, NULL, 0 },
	{ NULL, 0, NULL, 0 },
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: finx-sandbox --listen HOST:PORT --client-id ID "
	    "--client-secret SECRET\n"
	    "       [--port-file FILE] [--public-url URL] [--code-ttl S]\n"
	    "       [--access-ttl S] [--refresh-ttl S] [--rotate on|off]\n"
	    "       [--omit-refresh-token] [--token-bytes N] [--latency-ms N]\n"
	    "       [--token-latency-ms N] [--token-latency-min-ms N]\n"
	    "       [--token-latency-max-ms N] [--rotate-percent P]\n"
	    "       [--error-style oauth|finx]\n"
	    "       [--cancel-param abort|cancel] [--transactions N]\n"
	    "       [--sync-step-ms N] [--sync-fail] [--repeat-transaction]\n"
	    "HOST must be a loopback address (127.0.0.0/8, ::1, localhost); "
	    "PORT may be 0.\n");
}

/* Parses HOST:PORT or [V6]:PORT into o; loopback only. */
static int
parse_listen(const char *arg, struct opts *o)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&o->sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&o->sa;
	const char *colon = strrchr(arg, ':');
	char *host;

	if (colon == NULL || parse_long(colon + 1, 0, 65535, &o->port) == -1)
		return -1;
	if (arg[0] == '[' && colon > arg + 1 && colon[-1] == ']')
		host = xstrndup(arg + 1, (size_t)(colon - arg - 2));
	else
		host = xstrndup(arg, (size_t)(colon - arg));
	memset(&o->sa, 0, sizeof(o->sa));
	if (strcmp(host, "localhost") == 0 ||
	    inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)o->port);
		if (strcmp(host, "localhost") == 0)
			s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127)
			goto bad;
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)o->port);
		if (!IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			goto bad;
		o->ipv6 = true;
	} else
		goto bad;
	o->host = host;
	return 0;
bad:
	free(host);
	return -1;
}

static int
knob_option(const char *name, const char *arg)
{
	char key[64], err[160];
	size_t i;

	for (i = 0; name[i] != '\0' && i + 1 < sizeof(key); i++)
		key[i] = name[i] == '-' ? '_' : name[i];
	key[i] = '\0';
	if (config_set_str(&sbx.cfg, key, arg != NULL ? arg : "on", err,
	        sizeof(err)) == -1) {
		fprintf(stderr, "finx-sandbox: --%s: %s\n", name, err);
		return -1;
	}
	return 0;
}

static int
parse_args(int argc, char **argv, struct opts *o)
{
	int c, idx;

	while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
		switch (c) {
		case 'l':
			free(o->host);
			o->host = NULL;
			if (parse_listen(optarg, o) == -1) {
				fprintf(stderr,
				    "finx-sandbox: --listen wants "
				    "a loopback HOST:PORT\n");
				return -1;
			}
			break;
		case 'p':
			o->port_file = optarg;
			break;
		case 'u':
			o->public_url = optarg;
			break;
		case 'i':
			free(sbx.client_id);
			sbx.client_id = xstrdup(optarg);
			break;
		case 's':
			free(sbx.client_secret);
			sbx.client_secret = xstrdup(optarg);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 0:
			if (knob_option(longopts[idx].name, optarg) == -1)
				return -1;
			break;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc || o->host == NULL || sbx.client_id == NULL ||
	    sbx.client_secret == NULL || sbx.client_id[0] == '\0' ||
	    sbx.client_secret[0] == '\0') {
		fprintf(stderr,
		    "finx-sandbox: --listen, --client-id and "
		    "--client-secret are required\n");
		usage(stderr);
		return -1;
	}
	return 0;
}

/* Writes the port via FILE.tmp and rename(2), so readers see all or none. */
static int
write_port_file(const char *path, unsigned int port)
{
	struct sbx_buf tmp;
	FILE *f;
	int rc = -1;

	buf_init(&tmp);
	buf_addf(&tmp, "%s.tmp", path);
	if ((f = fopen(buf_str(&tmp), "w")) == NULL)
		goto out;
	if (fprintf(f, "%u\n", port) < 0) {
		fclose(f);
		goto out;
	}
	if (fclose(f) != 0 || rename(buf_str(&tmp), path) != 0)
		goto out;
	rc = 0;
out:
	if (rc == -1)
		perror("finx-sandbox: port file");
	buf_free(&tmp);
	return rc;
}

static void
set_public_url(const struct opts *o, unsigned int port)
{
	struct sbx_buf b;

	buf_init(&b);
	if (o->public_url != NULL)
		buf_adds(&b, o->public_url);
	else
		buf_addf(&b, o->ipv6 ? "http://[%s]:%u" : "http://%s:%u",
		    o->host, port);
	while (b.len > 0 && b.p[b.len - 1] == '/')
		b.p[--b.len] = '\0';
	sbx.public_url = buf_steal(&b);
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct MHD_Daemon *d = NULL;
	unsigned int port;
	sigset_t set;
	int sig, rc = 2;

	memset(&o, 0, sizeof(o));
	/* before any thread: notifications are fired with libcurl */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 2;
	sbx_state_init();
	if (parse_args(argc, argv, &o) == -1)
		goto out;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	/* Before MHD starts, so that its threads inherit the mask. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/*
	 * With port 0 the public URL is known only once MHD has bound, so
	 * hold the state lock across the start: early requests wait for it.
	 */
	sbx_lock();
	if ((d = http_start((struct sockaddr *)&o.sa, o.ipv6)) == NULL) {
		sbx_unlock();
		fprintf(stderr, "finx-sandbox: cannot listen on %s:%ld\n",
		    o.host, o.port);
		goto out;
	}
	port = http_port(d);
	set_public_url(&o, port);
	sbx_unlock();
	if (o.port_file != NULL && write_port_file(o.port_file, port) == -1)
		goto out;
	fprintf(stderr,
	    o.ipv6 ? "finx-sandbox listening on http://[%s]:%u\n"
	           : "finx-sandbox listening on http://%s:%u\n",
	    o.host, port);
	fflush(stderr);
	while (sigwait(&set, &sig) != 0)
		;
	rc = 0;
out:
	if (d != NULL)
		MHD_stop_daemon(d);
	free(o.host);
	sbx_state_free();
	curl_global_cleanup();
	return rc;
}
