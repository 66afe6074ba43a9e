/* Job mode's result line (node-agent/jobmode.c): what a per-node Job writes into its
 * termination message and what the dispatcher reads back, its host Events included; the
 * 4096-byte limit of the message holds whatever the error and the Events say, and the line
 * stays whole JSON, cut at character boundaries. The flows against an API server are in
 * tests/integration/test-jobmode.sh. */
#include <string.h>

#include "err.h"
#include "json.h"
#include "node-agent/jobmode.h"
#include "strv.h"
#include "tap.h"

static void add_event(kd_agent_job_result *r, const char *reason, const char *msg)
{
	kd_agent_host_event *e = &r->events[r->n_events++];
	e->warning = true;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	snprintf(e->action, sizeof(e->action), "Install");
	snprintf(e->message, sizeof(e->message), "%s", msg);
}

/* Well-formed UTF-8 (no sequence cut in two). */
static bool utf8_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : 3;
		if ((*p & 0xC0) == 0x80)
			return false;
		p++;
		for (int i = 0; i < n; i++, p++)
			if ((*p & 0xC0) != 0x80)
				return false;
	}
	return true;
}

static bool parses(const char *text)
{
	struct json_object *o = NULL;
	kd_error err = {0};
	int r = kd_json_parse(text, strlen(text), "result", &o, &err);
	json_object_put(o);
	return r >= 0;
}

TEST(install_round_trip)
{
	kd_agent_job_result r = {0}, back;
	kd_error err = {0};
	char *installed[] = {"qemu", NULL}, *skipped[] = {"qemu-snp", NULL};

	snprintf(r.version, sizeof(r.version), "3.99.0-demo");
	snprintf(r.id, sizeof(r.id), "0123456789abcdef");
	snprintf(r.source, sizeof(r.source), "oci://registry.example/kata/payload:3.99");
	snprintf(r.prefix, sizeof(r.prefix), "/opt/kata");
	snprintf(r.runtime, sizeof(r.runtime), "containerd");
	r.config_changed = true;
	r.installed = installed;
	r.skipped = skipped;
	add_event(&r, "HostCheckWarning", "some enabled shims cannot run on this node: qemu-snp");
	char *text = kd_agent_job_result_text(false, &r, NULL);
	CHECK(text && strlen(text) <= KD_AGENT_RESULT_TEXT_MAX);
	CHECK(text && !strchr(text, '\n'));
	CHECK_INT(kd_agent_job_result_parse(text, false, &back, &err), 0);
	CHECK_STR(back.version, "3.99.0-demo");
	CHECK_STR(back.id, "0123456789abcdef");
	CHECK_STR(back.source, "oci://registry.example/kata/payload:3.99");
	CHECK_STR(back.runtime, "containerd");
	CHECK(back.config_changed);
	CHECK(back.installed && back.installed[0] && !strcmp(back.installed[0], "qemu"));
	CHECK(back.skipped && back.skipped[0] && !strcmp(back.skipped[0], "qemu-snp"));
	CHECK_INT(back.n_events, 1);
	CHECK_STR(back.events[0].reason, "HostCheckWarning");
	CHECK(back.events[0].warning);
	CHECK_STR(back.events[0].message, "some enabled shims cannot run on this node: qemu-snp");
	CHECK_INT(back.events_dropped, 0);
	/* An install's result is no cleanup's. */
	kd_agent_job_result_done(&back);
	CHECK(kd_agent_job_result_parse(text, true, &back, &err) < 0);
	kd_agent_job_result_done(&back);
	free(text);
}

/* A failed Job: the error, and the Events it posted before failing (CRIDisabled). */
TEST(error_keeps_events)
{
	kd_agent_job_result r = {0}, back;
	kd_error err = {0};

	add_event(&r, "CRIDisabled",
		  "/etc/containerd/config.toml disables containerd's CRI plugin");
	char *text = kd_agent_job_result_text(false, &r, "refusing to install Kata handlers");
	CHECK(text != NULL);
	CHECK(kd_agent_job_result_parse(text, false, &back, &err) < 0);
	CHECK_STR(kd_err_msg(&err), "refusing to install Kata handlers");
	CHECK_INT(back.n_events, 1);
	CHECK_STR(back.events[0].reason, "CRIDisabled");
	kd_agent_job_result_done(&back);
	free(text);
	/* Not a result at all (the log's tail): the text is the error, no Events. */
	kd_err_clear(&err);
	CHECK(kd_agent_job_result_parse("panic: something", false, &back, &err) < 0);
	CHECK_STR(kd_err_msg(&err), "panic: something");
	CHECK_INT(back.n_events, 0);
	kd_agent_job_result_done(&back);
}

/* The longest error and eight 1024-byte Events with multi-byte characters and characters JSON
 * escapes: under the limit, whole JSON, UTF-8 intact, cuts marked, the error kept first. */
TEST(fits_the_termination_message)
{
	kd_agent_job_result r = {0}, back;
	kd_error err = {0};
	char error[KD_ERROR_MAX], msg[KD_AGENT_EVENT_MESSAGE_MAX + 1];
	size_t n = 0;

	while (n + 3 < sizeof(error) - 1) { /* "é" and "\"" in turn: 2 bytes, 2 escaped */
		memcpy(error + n, n % 4 ? "\"\"" : "\xc3\xa9", 2);
		n += 2;
	}
	error[n] = '\0';
	memset(msg, 'x', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	for (size_t i = 0; i + 3 < sizeof(msg) - 1; i += 7)
		memcpy(msg + i, "\xe2\x82\xac", 3); /* "€" */
	for (int i = 0; i < KD_AGENT_HOST_EVENTS_MAX; i++)
		add_event(&r, "HostCheckWarning", msg);
	char *text = kd_agent_job_result_text(false, &r, error);
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK(strlen(text) <= KD_AGENT_RESULT_TEXT_MAX);
	CHECK(strlen(text) > KD_AGENT_RESULT_TEXT_MAX / 2); /* cut, not emptied */
	CHECK(parses(text));
	CHECK(utf8_ok(text));
	CHECK(kd_agent_job_result_parse(text, false, &back, &err) < 0);
	CHECK(strlen(kd_err_msg(&err)) > 160);
	CHECK(strstr(kd_err_msg(&err), "...") != NULL);
	CHECK_INT(back.n_events, KD_AGENT_HOST_EVENTS_MAX);
	CHECK_INT(back.events_dropped, 0);
	for (size_t i = 0; i < back.n_events; i++) {
		size_t l = strlen(back.events[i].message);
		CHECK(l >= 3 && !strcmp(back.events[i].message + l - 3, "..."));
		CHECK(l >= 150); /* the floor, less a character cut short */
	}
	kd_agent_job_result_done(&back);
	free(text);

	/* No error: the Events share the room, none dropped, cut to one length. */
	r.n_events = 0;
	for (int i = 0; i < KD_AGENT_HOST_EVENTS_MAX; i++)
		add_event(&r, "HostCheckWarning", i % 2 ? msg : "short");
	text = kd_agent_job_result_text(false, &r, NULL);
	CHECK(text && strlen(text) <= KD_AGENT_RESULT_TEXT_MAX && parses(text) && utf8_ok(text));
	CHECK(text && strlen(text) > KD_AGENT_RESULT_TEXT_MAX - 16);
	kd_err_clear(&err);
	CHECK_INT(kd_agent_job_result_parse(text ? text : "", false, &back, &err), 0);
	CHECK_INT(back.n_events, KD_AGENT_HOST_EVENTS_MAX);
	CHECK_STR(back.events[0].message, "short");
	CHECK(strlen(back.events[1].message) > 400);
	CHECK(strlen(back.events[1].message) + 8 >= strlen(back.events[3].message));
	kd_agent_job_result_done(&back);
	free(text);
}

/* Long fixed fields leave room for some Events only: the last ones are dropped and counted;
 * fields that alone exceed the limit give an error result, never a cut line. */
TEST(events_dropped_then_error)
{
	kd_agent_job_result r = {0}, back;
	kd_error err = {0};
	char msg[KD_AGENT_EVENT_MESSAGE_MAX + 1];

	memset(r.source, '"', sizeof(r.source) - 1); /* 2 bytes each in JSON */
	memset(r.prefix, '"', sizeof(r.prefix) - 1);
	memset(msg, 'y', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	for (int i = 0; i < KD_AGENT_HOST_EVENTS_MAX; i++)
		add_event(&r, i ? "HostCheckWarning" : "CRIDisabled", msg);
	r.events_dropped = 1; /* one more than the array held */
	char *text = kd_agent_job_result_text(false, &r, NULL);
	CHECK(text && strlen(text) <= KD_AGENT_RESULT_TEXT_MAX && parses(text));
	CHECK_INT(kd_agent_job_result_parse(text ? text : "", false, &back, &err), 0);
	CHECK(back.n_events >= 1 && back.n_events < KD_AGENT_HOST_EVENTS_MAX);
	CHECK_STR(back.events[0].reason, "CRIDisabled"); /* the first ones are kept */
	CHECK_INT(back.n_events + back.events_dropped, KD_AGENT_HOST_EVENTS_MAX + 1);
	CHECK_INT(strlen(back.source), sizeof(r.source) - 1); /* never cut */
	kd_agent_job_result_done(&back);
	free(text);

	memset(r.source, 1, sizeof(r.source) - 1); /* 6 bytes each: \u0001 */
	text = kd_agent_job_result_text(false, &r, NULL);
	CHECK(text && strlen(text) <= KD_AGENT_RESULT_TEXT_MAX && parses(text));
	CHECK(kd_agent_job_result_parse(text ? text : "", false, &back, &err) < 0);
	CHECK(strstr(kd_err_msg(&err), "longer than the 4096 bytes") != NULL);
	kd_agent_job_result_done(&back);
	free(text);
}

/* Malformed Events in a result (a node writing what it likes) are counted, never posted. */
TEST(malformed_events_dropped)
{
	kd_agent_job_result back;
	kd_error err = {0};
	const char *text =
		"{\"action\":\"cleanup\",\"runtime\":\"crio\",\"prefix\":\"/opt/kata\","
		"\"configChanged\":false,\"kept\":2,\"events\":[{\"type\":\"Info\",\"reason\":\"X\","
		"\"action\":\"A\",\"message\":\"m\"},{\"type\":\"Warning\",\"reason\":\"\","
		"\"action\":\"A\",\"message\":\"m\"},{\"type\":\"Normal\",\"reason\":\"R\","
		"\"action\":\"A\"},7,{\"type\":\"Normal\",\"reason\":\"R\",\"action\":\"A\","
		"\"message\":\"ok\"}],\"eventsDropped\":3}";

	CHECK_INT(kd_agent_job_result_parse(text, true, &back, &err), 0);
	CHECK_INT(back.kept, 2);
	CHECK_INT(back.n_events, 1);
	CHECK_STR(back.events[0].message, "ok");
	CHECK(!back.events[0].warning);
	CHECK_INT(back.events_dropped, 3 + 4);
	kd_agent_job_result_done(&back);
}

TEST(host_event_reasons)
{
	CHECK(kd_agent_host_event_known("HostCheckWarning"));
	CHECK(kd_agent_host_event_known("CRIDisabled"));
	CHECK(!kd_agent_host_event_known("Installed"));
	CHECK(!kd_agent_host_event_known(NULL));
}

int main(void)
{
	RUN(install_round_trip);
	RUN(error_keeps_events);
	RUN(fits_the_termination_message);
	RUN(events_dropped_then_error);
	RUN(malformed_events_dropped);
	RUN(host_event_reasons);
	TAP_END();
}
