/*
 * overview.c - the dashboard's overview page, rendered here so that it
 * works without script: the collector's health and coverage in a header,
 * then one row per public IP x protocol, sorted by pressure (the larger
 * of its ports in use of its port space and its worst destination
 * bucket's mappings of that bucket's capacity).
 *
 * The figures are the API's own: the page reads the very JSON documents
 * /api/v1/status and /api/v1/gateways answer (store_json_*) back with
 * jansson, so the page and the API cannot disagree.  Every string from
 * them goes through web_buf_html(); numbers are printed from numbers.
 * Bars are <meter> elements (their colours at the thresholds are the
 * browser's own), so the page needs no inline style and the
 * Content-Security-Policy can forbid it.  web/ui/dash.js renders the same
 * rows from the same API when it refreshes; the two must stay alike.
 */
#include "web/internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "store/store.h"
#include "web/web.h"

void web_buf_html(struct web_buf *b, const char *s)
{
	const char *run = s;

	if (!s)
		return;
	for (; *s; s++) {
		const char *ref;

		switch (*s) {
		case '&': ref = "&amp;"; break;
		case '<': ref = "&lt;"; break;
		case '>': ref = "&gt;"; break;
		case '"': ref = "&quot;"; break;
		case '\'': ref = "&#39;"; break;
		default: continue;
		}
		web_buf_add(b, run, (size_t)(s - run));
		web_buf_add(b, ref, strlen(ref));
		run = s + 1;
	}
	web_buf_add(b, run, (size_t)(s - run));
}

/* ---- reading the API's JSON ---- */

static double jnum(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : 0;
}

static const char *jstr(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Parses a store answer (and frees it).  NULL with errno EPROTO when it
 * is not a JSON object. */
static json_t *web_parse_answer(char *text)
{
	json_error_t jerr;
	json_t *doc = json_loads(text, 0, &jerr);

	free(text);
	if (!json_is_object(doc)) {
		log_warnx("web: overview: cannot read the store's answer: %s",
			  doc ? "not an object" : jerr.text);
		json_decref(doc);
		errno = EPROTO;
		return NULL;
	}
	return doc;
}

/* ---- one gateway row ---- */

/* Which of a gateway's figures the columns show: at the end of the
 * period (live, or the period holding at=), or the peaks over a range
 * (from=/to=; each its own peak, not one moment's). */
struct web_cols {
	const char *ports, *hosts, *mappings;
	int range;
};
static const struct web_cols web_cols_now = { "ports_in_use", "hosts",
					      "mappings", 0 };
static const struct web_cols web_cols_range = { "ports_peak", "hosts_max",
						"mappings_peak", 1 };

struct web_row {
	json_t *g;	   /* the gateway's object in the answer */
	double pressure;   /* max(ports ratio, worst bucket ratio) */
	double ports_ratio, bucket_ratio;
};

static double web_ratio(double part, double whole)
{
	return whole > 0 ? part / whole : 0;
}

static int web_row_cmp(const void *a, const void *b)
{
	const struct web_row *x = a, *y = b;
	int c;

	if (x->pressure != y->pressure)
		return x->pressure > y->pressure ? -1 : 1;
	c = strcmp(jstr(x->g, "public_ip") ? jstr(x->g, "public_ip") : "",
		   jstr(y->g, "public_ip") ? jstr(y->g, "public_ip") : "");
	if (c)
		return c;
	return strcmp(jstr(x->g, "proto") ? jstr(x->g, "proto") : "",
		      jstr(y->g, "proto") ? jstr(y->g, "proto") : "");
}

static const char *web_level(const struct web_page_cfg *cfg, double ratio)
{
	return ratio >= cfg->critical ? "crit" :
	       ratio >= cfg->warn     ? "warn" : "ok";
}

/* <meter> for value of max, yellow from warn, red from critical. */
static void web_meter(struct web_buf *b, const struct web_page_cfg *cfg,
		      double value, double max)
{
	web_buf_printf(b, "<meter min=\"0\" max=\"%.0f\" low=\"%.1f\" "
		       "high=\"%.1f\" optimum=\"0\" value=\"%.0f\"></meter>",
		       max, max * cfg->warn, max * cfg->critical, value);
}

/* A destination bucket as people write it: 198.51.100.7:443,
 * [2001:db8::7]:443, with " zone N" when not the default zone. */
static void web_destination(struct web_buf *b, const json_t *d)
{
	const char *ip = jstr(d, "ip");
	int v6 = ip && strchr(ip, ':');

	web_buf_add(b, "[", v6 ? 1 : 0);
	web_buf_html(b, ip);
	web_buf_printf(b, "%s:%.0f", v6 ? "]" : "", jnum(d, "port"));
	if (jnum(d, "zone") != 0)
		web_buf_printf(b, " zone %.0f", jnum(d, "zone"));
}

/* A bucket's mappings: now ("mappings"), or its peak in a period of
 * history ("peak"). */
static double web_bucket_mappings(const json_t *d)
{
	return json_object_get(d, "mappings") ? jnum(d, "mappings") :
						jnum(d, "peak");
}

/* at: "" live, or "&at=<RFC 3339>" (or "&from=...&to=...") for links to
 * the same moment (range) */
static void web_row_html(struct web_buf *b, const struct web_page_cfg *cfg,
			 const struct web_cols *cols, const struct web_row *r,
			 const char *at)
{
	const json_t *g = r->g, *d = json_object_get(g, "worst_destination");
	const json_t *states = json_object_get(g, "states");
	double mappings = jnum(g, cols->mappings);
	double ports = jnum(g, cols->ports);

	web_buf_printf(b, "<tr class=\"lvl-%s\" data-ip=\"",
		       web_level(cfg, r->pressure));
	web_buf_html(b, jstr(g, "public_ip"));
	WEB_BUF_LIT(b, "\" data-proto=\"");
	web_buf_html(b, jstr(g, "proto"));
	WEB_BUF_LIT(b, "\">\n <th scope=\"row\" class=\"ip\"><a href=\"/gateway/");
	web_buf_html(b, jstr(g, "public_ip"));
	WEB_BUF_LIT(b, "?proto=");
	web_buf_html(b, jstr(g, "proto"));
	web_buf_html(b, at);
	WEB_BUF_LIT(b, "\">");
	web_buf_html(b, jstr(g, "public_ip"));
	WEB_BUF_LIT(b, "</a></th><td class=\"proto\" data-label=\"proto\">");
	web_buf_html(b, jstr(g, "proto"));
	web_buf_printf(b, "</td>\n <td class=\"num\" data-label=\"pressure\" "
		       "data-k=\"pressure\">%.1f %%</td>\n", r->pressure * 100);

	web_buf_printf(b, " <td class=\"bar lvl-%s\" data-label=\"ports in "
		       "use\">", web_level(cfg, r->ports_ratio));
	web_meter(b, cfg, ports, jnum(g, "port_space"));
	web_buf_printf(b, " <span data-k=\"ports_in_use\">%.0f</span> of "
		       "<span data-k=\"port_space\">%.0f</span> "
		       "<span class=\"pct\">%.1f %%</span>", ports,
		       jnum(g, "port_space"), r->ports_ratio * 100);
	if (cols->range && jstr(g, "ports_peak_at")) {
		WEB_BUF_LIT(b, " <time class=\"when\" data-k=\"ports_peak_at\">");
		web_buf_html(b, jstr(g, "ports_peak_at"));
		WEB_BUF_LIT(b, "</time>");
	}
	WEB_BUF_LIT(b, "</td>\n");

	if (json_is_object(d)) {
		web_buf_printf(b, " <td class=\"bar lvl-%s\" "
			       "data-label=\"worst destination\"><span "
			       "class=\"dst\" data-k=\"worst\">",
			       web_level(cfg, r->bucket_ratio));
		web_destination(b, d);
		WEB_BUF_LIT(b, "</span> ");
		web_meter(b, cfg, web_bucket_mappings(d), jnum(d, "capacity"));
		web_buf_printf(b, " <span data-k=\"worst_mappings\">%.0f</span>"
			       " of <span data-k=\"worst_capacity\">%.0f</span>"
			       " <span class=\"pct\">%.1f %%</span>",
			       web_bucket_mappings(d), jnum(d, "capacity"),
			       r->bucket_ratio * 100);
		if (cols->range && jstr(d, "at")) {
			WEB_BUF_LIT(b, " <time class=\"when\" "
				    "data-k=\"worst_at\">");
			web_buf_html(b, jstr(d, "at"));
			WEB_BUF_LIT(b, "</time>");
		}
		WEB_BUF_LIT(b, "</td>\n");
	} else {
		web_buf_printf(b, " <td class=\"bar\" data-label=\"worst "
			       "destination\"><span data-k=\"worst\">none"
			       "</span></td>\n");
	}

	web_buf_printf(b, " <td class=\"num\" data-label=\"hosts\" "
		       "data-k=\"hosts\">%.0f</td><td class=\"num\" "
		       "data-label=\"mappings\" data-k=\"mappings\">%.0f</td>",
		       jnum(g, cols->hosts), mappings);
	if (cols->range && json_is_number(json_object_get(g, "time_wait_peak")))
		web_buf_printf(b, "<td class=\"num\" data-label=\"TIME_WAIT\" "
			       "data-k=\"time_wait\">peak %.0f</td>",
			       jnum(g, "time_wait_peak"));
	else if (!cols->range && json_is_object(states) && mappings > 0)
		web_buf_printf(b, "<td class=\"num\" data-label=\"TIME_WAIT\" "
			       "data-k=\"time_wait\">%.1f %%</td>",
			       100 * jnum(states, "time_wait") / mappings);
	else
		web_buf_printf(b, "<td class=\"num\" data-label=\"TIME_WAIT\" "
			       "data-k=\"time_wait\">&#8212;</td>");
	web_buf_printf(b, "<td class=\"spark\" data-label=\"%s\">"
		       "</td>\n</tr>\n", cols->range ? "the range" :
		       "last hour");
}

/* ---- the header: health and coverage ---- */

/* How the header is coloured: crit when writes fail, warn when the
 * figures may be off (a gap, starting, resyncing), info when no run is
 * live (a stopped run, an import), ok otherwise. */
static const char *web_health_level(const char *state, int complete)
{
	if (!state || strcmp(state, "db-error") == 0)
		return "crit";
	if (!complete || strcmp(state, "starting") == 0 ||
	    strcmp(state, "resyncing") == 0)
		return "warn";
	if (strcmp(state, "stopped") == 0)
		return "info";
	return "ok";
}

static void web_kernel_counter(struct web_buf *b, const json_t *ct,
			       const char *key)
{
	json_t *v = json_object_get(ct, key);

	web_buf_printf(b, "<span data-k=\"%s\">", key);
	if (json_is_number(v))
		web_buf_printf(b, "%.0f", json_number_value(v));
	else
		WEB_BUF_LIT(b, "unknown");
	web_buf_printf(b, "</span> %s", key);
}

static void web_header_html(struct web_buf *b, const struct web_page_cfg *cfg,
			    const json_t *status, const json_t *gateways)
{
	const json_t *cov = json_object_get(gateways, "coverage");
	const json_t *gaps = json_object_get(cov, "gaps");
	const json_t *ct = json_object_get(status, "conntrack");
	const char *state = jstr(status, "state"), *note = jstr(status, "note");
	int complete = json_is_true(json_object_get(cov, "complete"));
	size_t i;
	json_t *gap;

	web_buf_printf(b, "<header id=\"health\" class=\"health lvl-%s\">\n",
		       web_health_level(state, complete));
	web_page_nav(b, "overview");
	WEB_BUF_LIT(b, "<dl>\n<div><dt>showing</dt><dd data-k=\"showing\">");
	if (jstr(gateways, "at")) {
		WEB_BUF_LIT(b, "the past: ");
		web_buf_html(b, jstr(gateways, "resolution"));
		WEB_BUF_LIT(b, " period holding ");
		web_buf_html(b, jstr(gateways, "at"));
		WEB_BUF_LIT(b, " (<a href=\"/\">live</a>)");
	} else if (jstr(gateways, "from")) {
		WEB_BUF_LIT(b, "the past: peaks from ");
		web_buf_html(b, jstr(gateways, "from"));
		WEB_BUF_LIT(b, " to ");
		web_buf_html(b, jstr(gateways, "to"));
		web_buf_printf(b, " (%.0f ", jnum(gateways, "periods"));
		web_buf_html(b, jstr(gateways, "resolution"));
		WEB_BUF_LIT(b, " periods; <a href=\"/\">live</a>)");
	} else {
		WEB_BUF_LIT(b, "live");
	}
	WEB_BUF_LIT(b, "</dd></div>\n");
	WEB_BUF_LIT(b, "<div><dt>state</dt><dd data-k=\"state\">");
	web_buf_html(b, state ? state : "unknown");
	WEB_BUF_LIT(b, "</dd></div>\n<div><dt>follow</dt><dd data-k=\"follow\">");
	web_buf_html(b, jstr(cov, "follow"));
	WEB_BUF_LIT(b, "</dd></div>\n<div><dt>as of</dt><dd><time "
		    "data-k=\"as_of\">");
	web_buf_html(b, jstr(gateways, "as_of"));
	WEB_BUF_LIT(b, "</time></dd></div>\n<div><dt>coverage</dt><dd "
		    "data-k=\"coverage\">");
	if (complete) {
		WEB_BUF_LIT(b, "complete");
	} else {
		WEB_BUF_LIT(b, "<strong>NOT COMPLETE</strong>: the figures may "
			    "be off");
		json_array_foreach(gaps, i, gap) {
			web_buf_add(b, i ? "; " : " (", 2);
			web_buf_html(b, jstr(gap, "reason"));
			WEB_BUF_LIT(b, " gap from ");
			web_buf_html(b, jstr(gap, "start"));
			if (jstr(gap, "end"))
				WEB_BUF_LIT(b, " to ");
			else
				WEB_BUF_LIT(b, ", open");
			web_buf_html(b, jstr(gap, "end"));
			if (jnum(gap, "events_lost") > 0)
				web_buf_printf(b, ", %.0f events lost",
					       jnum(gap, "events_lost"));
		}
		if (json_array_size(gaps) > 0)
			WEB_BUF_LIT(b, ")");
	}
	WEB_BUF_LIT(b, "</dd></div>\n<div><dt>kernel</dt><dd>");
	if (json_is_object(ct)) {
		web_kernel_counter(b, ct, "insert_failed");
		WEB_BUF_LIT(b, ", ");
		web_kernel_counter(b, ct, "drop");
	} else {
		WEB_BUF_LIT(b, "no kernel counters (not a live run)");
	}
	web_buf_printf(b, "</dd></div>\n<div><dt>thresholds</dt><dd>warn "
		       "%.0f %%, critical %.0f %%</dd></div>\n",
		       cfg->warn * 100, cfg->critical * 100);
	if (note) {
		WEB_BUF_LIT(b, "<div><dt>note</dt><dd data-k=\"note\">");
		web_buf_html(b, note);
		WEB_BUF_LIT(b, "</dd></div>\n");
	}
	WEB_BUF_LIT(b, "</dl>\n</header>\n");
}

/* ---- the page ---- */

void web_page_head(struct web_buf *b, const char *title, int refresh)
{
	web_buf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
		       "<meta charset=\"utf-8\">\n<meta name=\"viewport\" "
		       "content=\"width=device-width, initial-scale=1\">\n");
	if (refresh)
		web_buf_printf(b, "<meta http-equiv=\"refresh\" "
			       "content=\"5\">\n");
	web_buf_printf(b, "<title>%s</title>\n<link rel=\"icon\" "
		       "href=\"/ui/favicon.svg\" type=\"image/svg+xml\">\n"
		       "<link rel=\"stylesheet\" href=\"/ui/uPlot.min.css\">\n"
		       "<link rel=\"stylesheet\" href=\"/ui/dash.css\">\n",
		       title);
}

void web_page_nav(struct web_buf *b, const char *current)
{
	static const char *const links[][2] = {
		{ "/", "overview" }, { "/incidents", "incidents" },
		{ "/lookup", "lookup" },
	};

	WEB_BUF_LIT(b, "<div class=\"topbar\"><h1><a href=\"/\">natscope</a>"
		    "</h1>\n<nav aria-label=\"pages\"><ul>");
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		web_buf_printf(b, "<li><a href=\"%s\"%s>%s</a></li>",
			       links[i][0], current && !strcmp(current,
							       links[i][1]) ?
			       " aria-current=\"page\"" : "", links[i][1]);
	WEB_BUF_LIT(b, "</ul></nav>\n");
	/* without script: a past moment by a plain GET (the overview reads
	 * at=); pages.js replaces it with live / moment / range */
	WEB_BUF_LIT(b, "<form id=\"picker\" class=\"picker\" method=\"get\" "
		    "action=\"\"><label>at <input name=\"at\" type=\"text\" "
		    "size=\"22\" placeholder=\"2026-12-02T14:02:00Z\" "
		    "aria-label=\"a past moment, RFC 3339 or unix seconds\">"
		    "</label> or <label>from <input name=\"from\" "
		    "type=\"text\" size=\"22\" placeholder=\"2026-12-02T13:00"
		    ":00Z\" aria-label=\"the start of a range\"></label> "
		    "<label>to <input name=\"to\" type=\"text\" size=\"22\" "
		    "placeholder=\"now\" aria-label=\"the end of a range (empty:"
		    " now)\"></label> <button type=\"submit\">show</button> "
		    "<a href=\"?\">live</a></form>\n</div>\n");
}

char *web_page_shell(const char *page, const struct web_page_cfg *cfg,
		     size_t *len)
{
	struct web_buf b = { 0 };

	web_page_head(&b, "natscope", 0);
	WEB_BUF_LIT(&b, "<script src=\"/ui/uPlot.min.js\" defer></script>\n"
		    "<script src=\"/ui/portmap.js\" defer></script>\n"
		    "<script src=\"/ui/pages.js\" defer></script>\n</head>\n");
	web_buf_printf(&b, "<body data-refresh=\"%u\" data-warn=\"%.4f\" "
		       "data-critical=\"%.4f\">\n<header id=\"top\" "
		       "class=\"health\">\n", cfg->refresh_s, cfg->warn,
		       cfg->critical);
	web_page_nav(&b, page);
	WEB_BUF_LIT(&b, "<p id=\"live\" aria-live=\"polite\"></p>\n</header>\n");
	WEB_BUF_LIT(&b, "<main id=\"page\" data-page=\"");
	web_buf_html(&b, page);
	WEB_BUF_LIT(&b, "\"><noscript><p>This page is drawn by JavaScript "
		    "from the API (<a href=\"/api/v1/\">/api/v1/</a>); the "
		    "<a href=\"/\">overview</a> works without it.</p>"
		    "</noscript></main>\n</body>\n</html>\n");
	if (b.err) {
		web_buf_free(&b);
		errno = ENOMEM;
		return NULL;
	}
	*len = b.len;
	return b.p;
}

char *web_page_message(const char *msg, int refresh, size_t *len)
{
	struct web_buf b = { 0 };

	web_page_head(&b, "natscope", refresh);
	WEB_BUF_LIT(&b, "</head>\n<body>\n<header id=\"health\" class=\"health "
		    "lvl-crit\"><h1>natscope</h1><p data-k=\"message\">");
	web_buf_html(&b, msg);
	WEB_BUF_LIT(&b, "</p></header>\n</body>\n</html>\n");
	if (b.err) {
		web_buf_free(&b);
		errno = ENOMEM;
		return NULL;
	}
	*len = b.len;
	return b.p;
}

char *web_page_login(const char *next, const char *msg, size_t *len)
{
	struct web_buf b = { 0 };

	web_page_head(&b, "natscope: token", 0);
	WEB_BUF_LIT(&b, "</head>\n<body>\n<header id=\"top\" class=\"health\">"
		    "<div class=\"topbar\"><h1>natscope</h1></div></header>\n"
		    "<main class=\"login\">\n<form method=\"post\" "
		    "action=\"/login\">\n<p>This natscope asks for its bearer "
		    "token (the first line of its <code>--auth-token-file</code>)"
		    ".  The browser keeps a cookie made from it for 12 hours, "
		    "or until the token changes.</p>\n");
	if (msg) {
		WEB_BUF_LIT(&b, "<p class=\"lvl-crit\" role=\"alert\" "
			    "id=\"login-error\">");
		web_buf_html(&b, msg);
		WEB_BUF_LIT(&b, "</p>\n");
	}
	WEB_BUF_LIT(&b, "<p><label for=\"token\">Token</label> <input "
		    "type=\"password\" id=\"token\" name=\"token\" "
		    "autocomplete=\"current-password\" required autofocus>"
		    "</p>\n<input type=\"hidden\" name=\"next\" value=\"");
	web_buf_html(&b, next);
	WEB_BUF_LIT(&b, "\">\n<p><button type=\"submit\">Open</button></p>\n"
		    "</form>\n<p>Scripts and scrapers send <code>Authorization: "
		    "Bearer TOKEN</code> instead.</p>\n</main>\n</body>\n"
		    "</html>\n");
	if (b.err) {
		web_buf_free(&b);
		errno = ENOMEM;
		return NULL;
	}
	*len = b.len;
	return b.p;
}

char *web_overview(struct store *st, const struct web_page_cfg *cfg,
		   int64_t now_ms, int64_t at_ms, int64_t from_ms,
		   int64_t to_ms, unsigned limit, size_t *len)
{
	const struct web_cols *cols = from_ms != WEB_OVERVIEW_LIVE ?
				      &web_cols_range : &web_cols_now;
	size_t shown;
	char at[2 * NS_TIME_STRLEN + 16] = "";
	json_t *status = NULL, *gws = NULL, *list, *g;
	struct web_row *rows = NULL;
	struct web_buf b = { 0 };
	char *text;
	size_t n = 0, i;
	int err;

	if (store_json_status(st, now_ms, &text) == -1)
		return NULL;
	if (!(status = web_parse_answer(text)))
		return NULL;
	if (cols->range) {
		char t1[NS_TIME_STRLEN], t2[NS_TIME_STRLEN];

		snprintf(at, sizeof(at), "&from=%s&to=%s",
			 ns_time_format(from_ms, t1), ns_time_format(to_ms, t2));
		if (store_json_gateways_range(st, from_ms, to_ms, now_ms,
					      &text) == -1)
			goto err;
	} else if (at_ms != WEB_OVERVIEW_LIVE) {
		char t[NS_TIME_STRLEN];

		snprintf(at, sizeof(at), "&at=%s", ns_time_format(at_ms, t));
		if (store_json_gateways_at(st, at_ms, now_ms, &text) == -1)
			goto err;
	} else if (store_json_gateways(st, now_ms, &text) == -1) {
		goto err;
	}
	if (!(gws = web_parse_answer(text)))
		goto err;

	list = json_object_get(gws, "gateways");
	if (json_array_size(list) > 0 &&
	    !(rows = calloc(json_array_size(list), sizeof(*rows)))) {
		errno = ENOMEM;
		goto err;
	}
	json_array_foreach(list, i, g) {
		const json_t *d = json_object_get(g, "worst_destination");
		struct web_row *r = &rows[n++];

		r->g = g;
		r->ports_ratio = web_ratio(jnum(g, cols->ports),
					   jnum(g, "port_space"));
		r->bucket_ratio = json_is_object(d) ?
			web_ratio(web_bucket_mappings(d),
				  jnum(d, "capacity")) : 0;
		r->pressure = r->ports_ratio > r->bucket_ratio ?
			r->ports_ratio : r->bucket_ratio;
	}
	qsort(rows, n, sizeof(*rows), web_row_cmp);
	shown = n < limit ? n : limit;

	web_page_head(&b, "natscope: overview", 0);
	WEB_BUF_LIT(&b, "<script src=\"/ui/uPlot.min.js\" defer></script>\n"
		    "<script src=\"/ui/dash.js\" defer></script>\n</head>\n");
	web_buf_printf(&b, "<body data-refresh=\"%u\" data-warn=\"%.4f\" "
		       "data-critical=\"%.4f\" data-limit=\"%u\"", cfg->refresh_s,
		       cfg->warn, cfg->critical, limit);
	if (cols->range) { /* dash.js draws the sparklines over it */
		char t[NS_TIME_STRLEN];

		web_buf_printf(&b, " data-from=\"%s\"",
			       ns_time_format(from_ms, t));
		web_buf_printf(&b, " data-to=\"%s\"", ns_time_format(to_ms, t));
	} else if (at[0]) { /* dash.js reads the same moment, once */
		WEB_BUF_LIT(&b, " data-at=\"");
		web_buf_html(&b, at + 4);
		WEB_BUF_LIT(&b, "\"");
	}
	WEB_BUF_LIT(&b, ">\n");
	web_header_html(&b, cfg, status, gws);
	web_buf_printf(&b, "<main>\n<table id=\"overview\">\n<caption>Public "
		       "IPs by pressure: the fuller of their ports in use and "
		       "their worst destination bucket%s (<span "
		       "data-k=\"count\">%zu</span> rows)</caption>\n"
		       "<thead><tr><th scope=\"col\">public IP</th>"
		       "<th scope=\"col\">proto</th>"
		       "<th scope=\"col\">pressure</th>"
		       "<th scope=\"col\">ports in use%s</th>"
		       "<th scope=\"col\">worst destination%s</th>"
		       "<th scope=\"col\">hosts%s</th>"
		       "<th scope=\"col\">mappings%s</th>"
		       "<th scope=\"col\">TIME_WAIT</th>"
		       "<th scope=\"col\">%s</th></tr></thead>\n"
		       "<tbody>\n", cols->range ? ", each at its peak in the "
		       "range" : "", n, cols->range ? " (peak)" : "",
		       cols->range ? " (peak)" : "", cols->range ? " (most)" : "",
		       cols->range ? " (peak)" : "",
		       cols->range ? "the range" : "last hour");
	for (i = 0; i < shown; i++)
		web_row_html(&b, cfg, cols, &rows[i], at);
	if (n == 0 && cols->range)
		WEB_BUF_LIT(&b, "<tr class=\"empty\"><td colspan=\"9\">no "
			    "history of any public IP in this range</td></tr>\n");
	else if (n == 0)
		WEB_BUF_LIT(&b, "<tr class=\"empty\"><td colspan=\"9\">no public "
			    "IP has a mapping</td></tr>\n");
	WEB_BUF_LIT(&b, "</tbody>\n</table>\n");
	if (shown < n) {
		web_buf_printf(&b, "<p id=\"more-rows\">the %zu most pressed "
			       "rows of %zu: <a class=\"more\" href=\"/?limit="
			       "%u", shown, n, WEB_LIMIT_MAX);
		web_buf_html(&b, at);
		WEB_BUF_LIT(&b, "\">show every row</a></p>\n");
	}
	WEB_BUF_LIT(&b, "</main>\n</body>\n</html>\n");
	if (b.err) {
		errno = b.err;
		goto err;
	}
	free(rows);
	json_decref(status);
	json_decref(gws);
	*len = b.len;
	return b.p;

err:
	err = errno;
	web_buf_free(&b);
	free(rows);
	json_decref(status);
	json_decref(gws);
	errno = err;
	return NULL;
}
