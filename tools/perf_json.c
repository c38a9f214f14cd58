/* SPDX-License-Identifier: MIT */
/*
 * perf_json.c - machine-readable results of vmmu-perf (--json) and the
 * small JSON reader that `vmmu-perf compare` and `vmmu-perf tour` use.
 *
 * An experiment records what it measures with perf_record() (print_time()
 * does it for every "... time: S.NNNNNNNNNs" line); recording the same name
 * again adds a repeat.  With --json FILE the dispatcher writes, after the
 * experiment returns, one object:
 *
 *   { "tool": "vmmu-perf", "format": 1, "version": "0.1.0",
 *     "experiment": "populate", "command": ["populate", "-b", "64M"],
 *     "status": 0, "host": { "cpus": 2, "kernel": "6.1.0" },
 *     "config":  { "vcpus": "2", ... },
 *     "metrics": { "<name>": { "unit": "s", "median": m, "min": a, "max": b,
 *                              "repeats": [ ... ] }, ... },
 *     "floors":  { same shape: what the metrics are measured against },
 *     "ratios":  { same shape, unit "x" } }
 *
 * plus whatever the experiment adds with perf_json_extra() (the tour's
 * "rows").  Names are the metric lines' own names (KVM's where KVM has one).
 */
#define _GNU_SOURCE
#include "perf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

struct perf_entry {
	enum perf_kind kind;
	char *name, *unit;
	double *vals;
	size_t n;
};

static struct {
	struct perf_entry *e;
	size_t n;
	char **cfg_keys, **cfg_vals;
	size_t ncfg;
	void (*extra)(FILE *f, void *arg);
	void *extra_arg;
} rec;

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die("realloc", -ENOMEM);
	return p;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		die("strdup", -ENOMEM);
	return d;
}

static char rec_prefix[128];

void perf_record_prefix(const char *fmt, ...)
{
	va_list ap;

	rec_prefix[0] = '\0';
	if (!fmt)
		return;
	va_start(ap, fmt);
	vsnprintf(rec_prefix, sizeof(rec_prefix) - 2, fmt, ap);
	va_end(ap);
	strcat(rec_prefix, ": ");
}

void perf_record(enum perf_kind kind, const char *name, const char *unit, double value)
{
	struct perf_entry *e = NULL;
	char full[384];

	if (rec_prefix[0]) {
		snprintf(full, sizeof(full), "%s%s", rec_prefix, name);
		name = full;
	}

	for (size_t i = 0; i < rec.n; i++)
		if (rec.e[i].kind == kind && !strcmp(rec.e[i].name, name)) {
			e = &rec.e[i];
			break;
		}
	if (!e) {
		rec.e = xrealloc(rec.e, (rec.n + 1) * sizeof(*rec.e));
		e = &rec.e[rec.n++];
		*e = (struct perf_entry){ .kind = kind,
					  .name = xstrdup(name),
					  .unit = xstrdup(unit) };
	}
	e->vals = xrealloc(e->vals, (e->n + 1) * sizeof(*e->vals));
	e->vals[e->n++] = value;
}

void perf_recordf(enum perf_kind kind, const char *unit, double value, const char *fmt, ...)
{
	char name[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	perf_record(kind, name, unit, value);
}

void perf_config(const char *key, const char *fmt, ...)
{
	char val[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < rec.ncfg; i++)
		if (!strcmp(rec.cfg_keys[i], key)) {
			free(rec.cfg_vals[i]);
			rec.cfg_vals[i] = xstrdup(val);
			return;
		}
	rec.cfg_keys = xrealloc(rec.cfg_keys, (rec.ncfg + 1) * sizeof(char *));
	rec.cfg_vals = xrealloc(rec.cfg_vals, (rec.ncfg + 1) * sizeof(char *));
	rec.cfg_keys[rec.ncfg] = xstrdup(key);
	rec.cfg_vals[rec.ncfg++] = xstrdup(val);
}

void perf_json_extra(void (*fn)(FILE *f, void *arg), void *arg)
{
	rec.extra = fn;
	rec.extra_arg = arg;
}

void perf_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void perf_json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.9g", v);
	else
		fputs("null", f);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double perf_median(const double *v, size_t n)
{
	double *s, m;

	if (!n)
		return NAN;
	s = xrealloc(NULL, n * sizeof(*s));
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	free(s);
	return m;
}

static void write_section(FILE *f, enum perf_kind kind, const char *title)
{
	bool first = true;

	fprintf(f, ",\n  \"%s\": {", title);
	for (size_t i = 0; i < rec.n; i++) {
		const struct perf_entry *e = &rec.e[i];
		double lo = INFINITY, hi = -INFINITY;

		if (e->kind != kind)
			continue;
		for (size_t k = 0; k < e->n; k++) {
			lo = fmin(lo, e->vals[k]);
			hi = fmax(hi, e->vals[k]);
		}
		fprintf(f, "%s\n    ", first ? "" : ",");
		first = false;
		perf_json_str(f, e->name);
		fprintf(f, ": { \"unit\": ");
		perf_json_str(f, e->unit);
		fprintf(f, ", \"median\": ");
		perf_json_num(f, perf_median(e->vals, e->n));
		fprintf(f, ", \"min\": ");
		perf_json_num(f, lo);
		fprintf(f, ", \"max\": ");
		perf_json_num(f, hi);
		fprintf(f, ", \"repeats\": [");
		for (size_t k = 0; k < e->n; k++) {
			fputs(k ? ", " : "", f);
			perf_json_num(f, e->vals[k]);
		}
		fprintf(f, "] }");
	}
	fprintf(f, "%s}", first ? "" : "\n  ");
}

int perf_json_write(FILE *f, const char *experiment, int argc, char **argv, int status)
{
	struct utsname u;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	fprintf(f, "{\n  \"tool\": \"vmmu-perf\",\n  \"format\": 1,\n  \"version\": ");
	perf_json_str(f, VMMU_PERF_VERSION);
	fprintf(f, ",\n  \"experiment\": ");
	perf_json_str(f, experiment);
	fprintf(f, ",\n  \"command\": [");
	for (int i = 0; i < argc; i++) {
		fputs(i ? ", " : "", f);
		perf_json_str(f, argv[i]);
	}
	fprintf(f, "],\n  \"status\": %d,\n  \"host\": { \"cpus\": %ld, \"kernel\": ", status,
		cpus);
	perf_json_str(f, uname(&u) ? "?" : u.release);
	fprintf(f, " },\n  \"config\": {");
	for (size_t i = 0; i < rec.ncfg; i++) {
		fprintf(f, "%s\n    ", i ? "," : "");
		perf_json_str(f, rec.cfg_keys[i]);
		fputs(": ", f);
		perf_json_str(f, rec.cfg_vals[i]);
	}
	fprintf(f, "%s}", rec.ncfg ? "\n  " : "");
	write_section(f, PERF_METRIC, "metrics");
	write_section(f, PERF_FLOOR, "floors");
	write_section(f, PERF_RATIO, "ratios");
	if (rec.extra)
		rec.extra(f, rec.extra_arg);
	fprintf(f, "\n}\n");
	return ferror(f) ? -EIO : 0;
}

/* ---------------------------------------------------------------------------
 * Reader: enough JSON for what perf_json_write() and other tools write.
 * ------------------------------------------------------------------------- */

struct jparser {
	const char *p, *end;
	const char *err;
};

static void jv_free_inner(struct jv *v);

static void skip_ws(struct jparser *ps)
{
	while (ps->p < ps->end && isspace((unsigned char)*ps->p))
		ps->p++;
}

static bool parse_value(struct jparser *ps, struct jv *out, int depth);

static bool parse_string(struct jparser *ps, char **out)
{
	size_t cap = 16, n = 0;
	char *s = xrealloc(NULL, cap);

	ps->p++; /* opening quote */
	while (ps->p < ps->end && *ps->p != '"') {
		char c = *ps->p++;

		if (c == '\\') {
			if (ps->p >= ps->end)
				break;
			c = *ps->p++;
			switch (c) {
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case 'u': {
				unsigned cp = 0;

				if (ps->end - ps->p < 4)
					goto bad;
				for (int i = 0; i < 4; i++) {
					if (!isxdigit((unsigned char)ps->p[i]))
						goto bad;
					cp = cp * 16 +
					     (unsigned)(isdigit((unsigned char)ps->p[i]) ?
								ps->p[i] - '0' :
								(tolower((unsigned char)ps->p[i]) -
								 'a' + 10));
				}
				ps->p += 4;
				c = cp < 0x80 ? (char)cp : '?'; /* names here are ASCII */
				break;
			}
			default:
				break; /* \" \\ \/ */
			}
		}
		if (n + 2 > cap)
			s = xrealloc(s, cap *= 2);
		s[n++] = c;
	}
	if (ps->p >= ps->end)
		goto bad;
	ps->p++;
	s[n] = '\0';
	*out = s;
	return true;
bad:
	free(s);
	ps->err = "bad string";
	return false;
}

static bool parse_container(struct jparser *ps, struct jv *out, bool object, int depth)
{
	char close = object ? '}' : ']';

	out->type = object ? JV_OBJECT : JV_ARRAY;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return true;
	}
	for (;;) {
		char *key = NULL;

		skip_ws(ps);
		if (object) {
			if (ps->p >= ps->end || *ps->p != '"') {
				ps->err = "expected a key";
				return false;
			}
			if (!parse_string(ps, &key))
				return false;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				free(key);
				ps->err = "expected ':'";
				return false;
			}
			ps->p++;
		}
		out->items = xrealloc(out->items, (out->n + 1) * sizeof(*out->items));
		out->keys = xrealloc(out->keys, (out->n + 1) * sizeof(*out->keys));
		out->keys[out->n] = key;
		memset(&out->items[out->n], 0, sizeof(out->items[0]));
		out->n++;
		if (!parse_value(ps, &out->items[out->n - 1], depth + 1))
			return false;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			return true;
		}
		ps->err = object ? "expected ',' or '}'" : "expected ',' or ']'";
		return false;
	}
}

static bool parse_value(struct jparser *ps, struct jv *out, int depth)
{
	skip_ws(ps);
	if (depth > 64) {
		ps->err = "nested too deep";
		return false;
	}
	if (ps->p >= ps->end) {
		ps->err = "unexpected end";
		return false;
	}
	switch (*ps->p) {
	case '{':
		return parse_container(ps, out, true, depth);
	case '[':
		return parse_container(ps, out, false, depth);
	case '"':
		out->type = JV_STRING;
		return parse_string(ps, &out->str);
	case 't':
	case 'f':
	case 'n': {
		static const char *const words[] = { "true", "false", "null" };

		for (int i = 0; i < 3; i++) {
			size_t l = strlen(words[i]);

			if ((size_t)(ps->end - ps->p) >= l && !strncmp(ps->p, words[i], l)) {
				ps->p += l;
				out->type = i == 2 ? JV_NULL : JV_BOOL;
				out->num = i == 0;
				return true;
			}
		}
		ps->err = "bad literal";
		return false;
	}
	default: {
		char buf[64], *e;
		size_t l = 0;

		while (ps->p + l < ps->end && l < sizeof(buf) - 1 &&
		       strchr("+-0123456789.eE", ps->p[l]))
			l++;
		memcpy(buf, ps->p, l);
		buf[l] = '\0';
		out->num = strtod(buf, &e);
		if (!l || *e) {
			ps->err = "bad number";
			return false;
		}
		out->type = JV_NUMBER;
		ps->p += l;
		return true;
	}
	}
}

static void jv_free_inner(struct jv *v)
{
	for (size_t i = 0; i < v->n; i++) {
		free(v->keys[i]);
		jv_free_inner(&v->items[i]);
	}
	free(v->keys);
	free(v->items);
	free(v->str);
}

void jv_free(struct jv *v)
{
	if (v) {
		jv_free_inner(v);
		free(v);
	}
}

struct jv *jv_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct jparser ps = { .p = text, .end = text + len };
	struct jv *v = xrealloc(NULL, sizeof(*v));

	memset(v, 0, sizeof(*v));
	if (parse_value(&ps, v, 0)) {
		skip_ws(&ps);
		if (ps.p == ps.end)
			return v;
		ps.err = "trailing characters";
	}
	snprintf(err, errlen, "%s at offset %zu", ps.err, (size_t)(ps.p - text));
	jv_free(v);
	return NULL;
}

struct jv *jv_parse_file(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t len = 0, cap = 0, got;
	struct jv *v;

	if (!f) {
		snprintf(err, errlen, "%s", strerror(errno));
		return NULL;
	}
	do {
		if (len + 4096 > cap)
			text = xrealloc(text, cap = (cap + 4096) * 2);
		got = fread(text + len, 1, cap - len, f);
		len += got;
	} while (got);
	fclose(f);
	v = jv_parse(text, len, err, errlen);
	free(text);
	return v;
}

const struct jv *jv_get(const struct jv *v, const char *key)
{
	if (!v || v->type != JV_OBJECT)
		return NULL;
	for (size_t i = 0; i < v->n; i++)
		if (!strcmp(v->keys[i], key))
			return &v->items[i];
	return NULL;
}

double jv_num(const struct jv *v, double dflt)
{
	return v && v->type == JV_NUMBER ? v->num : dflt;
}

const char *jv_str(const struct jv *v, const char *dflt)
{
	return v && v->type == JV_STRING ? v->str : dflt;
}
