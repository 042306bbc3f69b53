/* test_event_json.c - event validation and identity stamping, the events a
 * plugin emits and the drop notice: their exact text, read back. */
#include "harness.h"
#include "wire/event_json.h"
#include "wire/json_scan.h"
#include "lib/json_index.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int stamp(const char *in, struct buf *out, uint64_t *id, const char **err)
{
    buf_reset(out);
    return event_stamp(in, strlen(in), 1234, 1000, out, id, NULL, err);
}

TEST(stamp_replaces_pid_keeps_claim_and_u64)
{
    struct buf b = BUF_INIT;
    uint64_t id;
    const char *err;
    REQUIRE(stamp("{\"eventId\":18446744073709551615,\"timestamp\":5,\"pid\":99,"
                  "\"processName\":\"x\",\"params\":{\"k\":\"v\"}}", &b, &id, &err) == 0);
    CHECK(id == UINT64_MAX);
    CHECK(strstr(b.p, "\"eventId\":18446744073709551615") != NULL);
    CHECK(strstr(b.p, "\"pid\":1234") != NULL);
    CHECK(strstr(b.p, "\"claimedPid\":99") != NULL);
    CHECK(strstr(b.p, "\"uid\":1000") != NULL);
    CHECK(strstr(b.p, "\"params\":{\"k\":\"v\"}") != NULL);
    CHECK(strstr(b.p, "\"pid\":99") == NULL);
    CHECK(json_validate(b.p, b.len, &err) == JSON_OBJECT);
    buf_free(&b);
}

TEST(stamp_escaped_pid_cannot_smuggle)
{
    struct buf b = BUF_INIT;
    uint64_t id;
    const char *err;
    REQUIRE(stamp("{\"eventId\":1,\"p\\u0069d\":99,\"u\\u0069d\":0}", &b, &id, &err) == 0);
    CHECK(strstr(b.p, "99,") == NULL || strstr(b.p, "\"claimedPid\":99") != NULL);
    CHECK(strstr(b.p, "\\u0069") == NULL);
    CHECK(strstr(b.p, "\"uid\":1000") != NULL);
    buf_free(&b);
}

TEST(stamp_adds_defaults)
{
    struct buf b = BUF_INIT;
    uint64_t id;
    const char *err;
    REQUIRE(stamp("{\"eventId\":7}", &b, &id, &err) == 0);
    CHECK(strstr(b.p, "\"timestamp\":") != NULL);
    CHECK(strstr(b.p, "\"params\":{}") != NULL);
    CHECK(strstr(b.p, "claimedPid") == NULL);
    buf_free(&b);
}

TEST(stamp_rejects_bad_events)
{
    struct buf b = BUF_INIT;
    uint64_t id;
    const char *err;
    const char *bad[] = {"[]", "{}", "{\"eventId\":-1}", "{\"eventId\":1.5}",
                         "{\"eventId\":\"1\"}", "{\"eventId\":18446744073709551616}",
                         "{\"eventId\":1,\"params\":[]}", "{\"eventId\":1,\"timestamp\":\"x\"}",
                         "{\"eventId\":1,\"pid\":\"x\"}", "{\"eventId\":1,\"logf\":5}",
                         "{\"eventId\":1", "not json"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(stamp(bad[i], &b, &id, &err) == -1);
        CHECK(err != NULL);
    }
    buf_free(&b);
}

/* ---- the emitted event and the drop notice ---- */

static const struct event_source daemon_src = {4321, "polarisd", "1.2.3"};

static int emitted(const char *in, struct buf *out, uint64_t *id, const char **err)
{
    buf_reset(out);
    *err = NULL;
    return event_json_emitted(in, strlen(in), &daemon_src, out, id, NULL, err);
}

/* the members of an event, looked up by key: the text must be one object */
static int members(const struct buf *b, struct json_member *m, size_t max)
{
    const char *err;
    int n = json_object_members(b->p, b->len, m, max, &err);
    return n > (int)max ? -1 : n;
}

static bool member_is(const struct json_member *m, int n, const char *key, enum json_kind kind,
                      const char *text)
{
    const struct json_member *f = json_find(m, (size_t)n, key);
    return f && f->kind == kind && f->val_len == strlen(text) && memcmp(f->val, text, f->val_len) == 0;
}

TEST(emitted_fills_the_daemon_as_source)
{
    struct buf b = BUF_INIT;
    uint64_t id = 0;
    const char *err;
    REQUIRE(emitted("{\"eventId\":5,\"timestamp\":9,\"params\":{\"a\":1}}", &b, &id, &err) == 0);
    CHECK(id == 5);
    CHECK(strcmp(b.p, "{\"eventId\":5,\"timestamp\":9,\"pid\":4321,\"processName\":\"polarisd\","
                      "\"processVer\":\"1.2.3\",\"params\":{\"a\":1}}") == 0);
    struct json_member m[16];
    int n = members(&b, m, 16);
    REQUIRE(n == 6);
    CHECK(member_is(m, n, "pid", JSON_NUMBER, "4321"));
    CHECK(member_is(m, n, "processName", JSON_STRING, "\"polarisd\""));
    CHECK(member_is(m, n, "processVer", JSON_STRING, "\"1.2.3\""));
    CHECK(json_find(m, (size_t)n, "uid") == NULL);           /* no identity stamped */
    buf_free(&b);
}

TEST(emitted_keeps_what_the_plugin_said)
{
    struct buf b = BUF_INIT;
    uint64_t id;
    const char *err;
    const char *in = "{\"eventId\":6,\"timestamp\":9,\"pid\":12,\"processName\":\"nginx\","
                     "\"processVer\":\"1.25\",\"params\":{}}";
    REQUIRE(emitted(in, &b, &id, &err) == 0);
    CHECK(strcmp(b.p, in) == 0);                             /* nothing added, no claimedPid */
    /* processName alone: pid and processVer still the daemon's */
    REQUIRE(emitted("{\"eventId\":6,\"timestamp\":9,\"processName\":\"sshd\",\"params\":{}}", &b,
                    &id, &err) == 0);
    CHECK(strcmp(b.p, "{\"eventId\":6,\"timestamp\":9,\"pid\":4321,\"processVer\":\"1.2.3\","
                      "\"processName\":\"sshd\",\"params\":{}}") == 0);
    buf_free(&b);
}

TEST(emitted_null_version_is_unknown_and_params_default)
{
    struct buf b = BUF_INIT;
    uint64_t id;
    const char *err;
    REQUIRE(emitted("{\"eventId\":7,\"timestamp\":9,\"processVer\":null}", &b, &id, &err) == 0);
    CHECK(strcmp(b.p, "{\"eventId\":7,\"timestamp\":9,\"params\":{},\"pid\":4321,"
                      "\"processName\":\"polarisd\",\"processVer\":\"unknown\"}") == 0);
    buf_free(&b);
}

TEST(emitted_timestamp_is_now_when_absent)
{
    struct buf b = BUF_INIT;
    uint64_t id;
    const char *err;
    uint64_t before = wall_ms();
    REQUIRE(emitted("{\"eventId\":8}", &b, &id, &err) == 0);
    uint64_t after = wall_ms();
    struct json_member m[16];
    int n = members(&b, m, 16);
    REQUIRE(n == 6);
    const struct json_member *ts = json_find(m, (size_t)n, "timestamp");
    uint64_t t = 0;
    REQUIRE(ts && ts->is_uint && json_to_u64(ts->val, ts->val_len, &t) == 0);
    CHECK(t >= before && t <= after);
    CHECK(member_is(m, n, "params", JSON_OBJECT, "{}"));
    buf_free(&b);
}

TEST(emitted_escapes_the_source_and_rejects_bad_events)
{
    struct buf b = BUF_INIT;
    uint64_t id;
    const char *err;
    const struct event_source odd = {-1, "a\"b", "v\n"};
    const char *in = "{\"eventId\":1,\"timestamp\":2}";
    buf_reset(&b);
    REQUIRE(event_json_emitted(in, strlen(in), &odd, &b, &id, NULL, &err) == 0);
    CHECK(strcmp(b.p, "{\"eventId\":1,\"timestamp\":2,\"params\":{},\"pid\":-1,"
                      "\"processName\":\"a\\\"b\",\"processVer\":\"v\\n\"}") == 0);
    CHECK(json_validate(b.p, b.len, &err) == JSON_OBJECT);
    const char *bad[] = {"{}", "[1,2]", "{\"eventId\":1,\"pid\":\"x\"}", "{\"eventId\":1,\"pid\":null}",
                         "{\"eventId\":1,\"params\":[]}", "{\"eventId\":1,\"processName\":5}",
                         "{\"eventId\":1,\"processVer\":true}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        CHECK(emitted(bad[i], &b, &id, &err) == -1);
        CHECK(err != NULL);
    }
    CHECK(emitted("{\"eventId\":1,\"pid\":\"x\"}", &b, &id, &err) == -1 &&
          strcmp(err, "pid must be an integer") == 0);
    buf_free(&b);
}

TEST(drop_notice_exact_text)
{
    struct buf b = BUF_INIT;
    const struct drop_counts d = {5, 2, 1700000000001ull, 1700000000999ull};
    REQUIRE(event_json_drop_notice(&b, 1700000001234ull, &daemon_src, &d) == 0);
    CHECK(strcmp(b.p, "{\"eventId\":1000001,\"timestamp\":1700000001234,\"pid\":4321,"
                      "\"processName\":\"polarisd\",\"processVer\":\"1.2.3\","
                      "\"params\":{\"dropped\":7,\"reason\":\"outbound buffer full\","
                      "\"buffer_full\":5,\"lost_with_session\":2,"
                      "\"first_drop_ts\":1700000000001,\"last_drop_ts\":1700000000999}}") == 0);
    buf_free(&b);
}

TEST(drop_notice_lost_only_and_round_trip)
{
    struct buf b = BUF_INIT;
    const char *err;
    const struct drop_counts d = {0, UINT64_MAX - 1, 0, 0};
    buf_puts(&b, "kept:");                                   /* appends, as documented */
    REQUIRE(event_json_drop_notice(&b, 42, &daemon_src, &d) == 0);
    REQUIRE(strncmp(b.p, "kept:", 5) == 0);
    const char *ev = b.p + 5;
    size_t len = b.len - 5;
    struct json_member m[16], p[16];
    int n = json_object_members(ev, len, m, 16, &err);
    REQUIRE(n == 6);
    const struct json_member *id = json_find(m, (size_t)n, "eventId");
    uint64_t v = 0;
    REQUIRE(id && id->is_uint && json_to_u64(id->val, id->val_len, &v) == 0);
    CHECK(v == 1000001);
    CHECK(member_is(m, n, "timestamp", JSON_NUMBER, "42"));
    CHECK(member_is(m, n, "pid", JSON_NUMBER, "4321"));
    const struct json_member *params = json_find(m, (size_t)n, "params");
    REQUIRE(params && params->kind == JSON_OBJECT);
    int np = json_object_members(params->val, params->val_len, p, 16, &err);
    REQUIRE(np == 6);
    CHECK(member_is(p, np, "dropped", JSON_NUMBER, "18446744073709551614"));
    CHECK(member_is(p, np, "reason", JSON_STRING, "\"lost with the guest session (no acks)\""));
    CHECK(member_is(p, np, "buffer_full", JSON_NUMBER, "0"));
    CHECK(member_is(p, np, "lost_with_session", JSON_NUMBER, "18446744073709551614"));
    CHECK(member_is(p, np, "first_drop_ts", JSON_NUMBER, "0"));
    CHECK(member_is(p, np, "last_drop_ts", JSON_NUMBER, "0"));
    /* what the guest gets is an event the ingress itself would accept */
    struct buf s = BUF_INIT;
    REQUIRE(event_stamp(ev, len, -1, 0, &s, &v, NULL, &err) == 0);
    CHECK(v == 1000001);
    buf_free(&s);
    buf_free(&b);
}

/* event_restamp_members (a strategy's result, from the members its
 * encoder noted, in place; the original's identity from spans or scanned)
 * against event_restamp (the returned text scanned): the same text or the
 * same refusal, for results that keep, drop, forge or duplicate the
 * identity and break each rule. */
static int restamp_both(const char *orig, const char *ret, bool spans)
{
    struct json_member m[EVENT_MEMBERS_MAX], o[EVENT_MEMBERS_MAX];
    struct json_span ident[4];
    const char *err_a = NULL, *err_b = NULL;
    struct buf a = BUF_INIT, b = BUF_INIT;
    int n = json_object_members(ret, strlen(ret), m, EVENT_MEMBERS_MAX, &err_a);
    int no = json_object_members(orig, strlen(orig), o, EVENT_MEMBERS_MAX, &err_a);
    if (n < 1 || no < 0)
        return -1;
    int nident = spans ? event_identity_spans(orig, o, no, ident, 4, NULL) : -1;
    int ra = event_restamp(orig, strlen(orig), ret, strlen(ret), &a, &err_a);
    buf_append(&b, ret, strlen(ret));
    /* the members as they sit in b's copy of the text */
    for (int i = 0; i < n && i < EVENT_MEMBERS_MAX; i++) {
        m[i].key = b.p + (m[i].key - ret);
        m[i].val = b.p + (m[i].val - ret);
    }
    int rb = event_restamp_members(orig, strlen(orig), ident, nident, m, n, &b, &err_b);
    int same = ra == rb && (ra < 0 ? strcmp(err_a, err_b) == 0 : a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    buf_free(&a);
    buf_free(&b);
    return same ? 0 : 1;
}

TEST(restamp_members_agrees_with_restamp)
{
    static const char *origs[] = {
        "{\"eventId\":7,\"timestamp\":5,\"pid\":1234,\"uid\":1000,\"params\":{}}",
        "{\"eventId\":7,\"timestamp\":5,\"pid\":1234,\"uid\":1000,\"claimedPid\":9,\"params\":{\"k\":1}}",
        "{\"eventId\":7,\"timestamp\":5,\"params\":{},\"pid\":3,\"pid\":4,\"p\\u0069d\":5}",
        "{\"eventId\":7,\"timestamp\":5,\"params\":{}}",
    };
    static const char *rets[] = {
        "{\"eventId\":7,\"timestamp\":5,\"pid\":1234,\"uid\":1000,\"params\":{\"seen\":true}}",
        "{\"eventId\":7,\"params\":{},\"timestamp\":5,\"pid\":1,\"uid\":0,\"claimedPid\":2}",
        "{\"eventId\":7,\"timestamp\":5,\"params\":{},\"u\\u0069d\":0,\"x\":[1,{\"pid\":2}]}",
        "{\"eventId\":7,\"params\":{\"a\":\"b\"},\"timestamp\":12345678901234}",
        "{\"eventId\":7}",
        "{\"eventId\":7,\"timestamp\":-1,\"params\":{}}",
        "{\"eventId\":7,\"timestamp\":1.5,\"params\":{}}",
        "{\"eventId\":7,\"timestamp\":5,\"params\":[]}",
        "{\"eventId\":7,\"timestamp\":5,\"params\":{},\"processName\":1}",
        "{\"eventId\":7,\"timestamp\":5,\"params\":{},\"processVer\":null,\"logf\":\"x\"}",
        "{\"eventId\":7,\"timestamp\":5,\"params\":{},\"logf\":{}}",
    };
    for (size_t i = 0; i < sizeof origs / sizeof *origs; i++)
        for (size_t j = 0; j < sizeof rets / sizeof *rets; j++) {
            CHECK(restamp_both(origs[i], rets[j], false) == 0);
            CHECK(restamp_both(origs[i], rets[j], true) == 0);
        }
}

/* The identity a strategy left alone stays where it stands; any change to
 * it (a value, the order, one missing or added) puts the original's at the
 * end instead. Both forms, with the original's spans known. */
static int restamped_to(const char *orig, const char *ret, const char *want)
{
    struct json_member m[EVENT_MEMBERS_MAX], o[EVENT_MEMBERS_MAX];
    struct json_span ident[4];
    const char *err = NULL;
    struct buf a = BUF_INIT, b = BUF_INIT;
    int n = json_object_members(ret, strlen(ret), m, EVENT_MEMBERS_MAX, &err);
    int no = json_object_members(orig, strlen(orig), o, EVENT_MEMBERS_MAX, &err);
    int nident = event_identity_spans(orig, o, no, ident, 4, NULL);
    int ra = event_restamp(orig, strlen(orig), ret, strlen(ret), &a, &err);
    buf_append(&b, ret, strlen(ret));
    for (int i = 0; i < n; i++) {
        m[i].key = b.p + (m[i].key - ret);
        m[i].val = b.p + (m[i].val - ret);
    }
    int rb = event_restamp_members(orig, strlen(orig), ident, nident, m, n, &b, &err);
    int ok = ra == 0 && rb == 0 && strcmp(a.p, want) == 0 && strcmp(b.p, want) == 0;
    if (!ok)
        fprintf(stderr, "  %s\n  -> %s\n  /  %s\n  want %s\n", ret, a.p, b.p, want);
    buf_free(&a);
    buf_free(&b);
    return ok ? 0 : 1;
}

TEST(restamp_keeps_the_identity_a_strategy_left_alone_in_place)
{
    const char *orig = "{\"eventId\":7,\"timestamp\":5,\"pid\":12,\"uid\":10,\"params\":{}}";
    const char *moved = "{\"eventId\":7,\"timestamp\":5,\"params\":{},\"pid\":12,\"uid\":10}";
    CHECK(restamped_to(orig, "{\"eventId\":7,\"pid\":12,\"uid\":10,\"timestamp\":5,\"params\":{\"s\":1}}",
                       "{\"eventId\":7,\"pid\":12,\"uid\":10,\"timestamp\":5,\"params\":{\"s\":1}}") == 0);
    CHECK(restamped_to(orig, "{\"eventId\":7,\"pid\":12,\"uid\":1,\"timestamp\":5,\"params\":{}}", moved) == 0);
    CHECK(restamped_to(orig, "{\"eventId\":7,\"uid\":10,\"pid\":12,\"timestamp\":5,\"params\":{}}", moved) == 0);
    CHECK(restamped_to(orig, "{\"eventId\":7,\"pid\":12,\"timestamp\":5,\"params\":{}}", moved) == 0);
    CHECK(restamped_to(orig, "{\"eventId\":7,\"pid\":12,\"uid\":10,\"claimedPid\":3,\"timestamp\":5,\"params\":{}}",
                       moved) == 0);
    CHECK(restamped_to(orig, "{\"eventId\":7,\"pid\":12,\"u\\u0069d\":10,\"timestamp\":5,\"params\":{}}", moved) == 0);
    CHECK(restamped_to(orig, "{\"eventId\":7,\"pid\":12,\"uid\":10.0,\"timestamp\":5,\"params\":{}}", moved) == 0);
}

/* An object of n members "k0".."k{n-1}" (numbers), with "eventId":7 as
 * member at (or none when at >= n). */
static char *members_object(int n, int at)
{
    struct buf b = BUF_INIT;
    buf_putc(&b, '{');
    for (int i = 0; i < n; i++) {
        char t[48];
        if (i == at)
            snprintf(t, sizeof t, "%s\"eventId\":7", i ? "," : "");
        else
            snprintf(t, sizeof t, "%s\"k%d\":%d", i ? "," : "", i, i);
        buf_puts(&b, t);
    }
    buf_putc(&b, '}');
    return b.p;
}

/* What a plugin host sends back is hostile: more members than an event
 * may have are refused before any is looked at (the daemon's array holds
 * 64; json_object_members counts past it). */
TEST(rewritten_id_holds_a_host_to_the_member_limit)
{
    uint64_t id = 0;
    char *ok = members_object(EVENT_MEMBERS_MAX, EVENT_MEMBERS_MAX - 1);
    CHECK(event_json_rewritten_id(ok, strlen(ok), &id) == 0 && id == 7);
    free(ok);
    for (int at = 0; at <= EVENT_MEMBERS_MAX + 1; at += EVENT_MEMBERS_MAX / 2) {
        char *big = members_object(EVENT_MEMBERS_MAX + 2, at);
        CHECK(event_json_rewritten_id(big, strlen(big), &id) < 0);
        free(big);
    }
    static const char *bad[] = {
        "[1]", "{\"eventId\":-1}", "{\"eventId\":1.5}", "{\"eventId\":\"7\"}", "{\"eventid\":7}",
        "{\"eventId\":18446744073709551616}", "{\"eventId\":7", "{\"eventId\":7}x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(event_json_rewritten_id(bad[i], strlen(bad[i]), &id) < 0);
    static const char *good[] = {
        "{\"eventId\":7}", "{\"eventId\":1,\"eventId\":7}", "{\"event\\u0049d\":7}",
        "{\"x\":{\"eventId\":8},\"eventId\":7}",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        id = 0;
        CHECK(event_json_rewritten_id(good[i], strlen(good[i]), &id) == 0 && id == 7);
    }
}

/* The index the stamp notes (lib/json_index.h) against the scanner: the
 * same members, field for field, or none where the text cannot have one. */
static int index_agrees(const char *in, pid_t pid, bool want_index)
{
    static const struct event_source src = {77, "plug", "2.0"};
    struct buf b = BUF_INIT;
    struct json_index ix;
    uint64_t id;
    const char *err;
    int rc = pid >= 0 ? event_stamp(in, strlen(in), pid, 1000, &b, &id, &(struct event_index_ask){&ix, NULL, NULL}, &err)
                      : event_json_emitted(in, strlen(in), &src, &b, &id, &ix, &err);
    if (rc < 0) {
        buf_free(&b);
        return 1;
    }
    struct json_member m[EVENT_MEMBERS_MAX], im[EVENT_MEMBERS_MAX];
    int k = json_object_members(b.p, b.len, m, EVENT_MEMBERS_MAX, &err);
    int bad = (ix.n != 0) != want_index || ix.len != (b.len <= UINT16_MAX ? b.len : ix.len);
    if (ix.n) {
        bad |= json_index_members(&ix, b.p, b.len, im, EVENT_MEMBERS_MAX) != k;
        for (int i = 0; !bad && i < k; i++)
            bad |= im[i].key != m[i].key || im[i].key_len != m[i].key_len || im[i].val != m[i].val ||
                   im[i].val_len != m[i].val_len || im[i].kind != m[i].kind ||
                   im[i].key_escaped != m[i].key_escaped || im[i].is_uint != m[i].is_uint;
        /* no key twice where the index says so */
        for (int i = 0; ix.keys_unique && i < k; i++)
            for (int j = 0; j < i; j++)
                bad |= m[i].key_len == m[j].key_len && memcmp(m[i].key, m[j].key, m[i].key_len) == 0;
        /* the identity the stamp noted: all of it, as the scan finds it,
         * and the eventId first; none noted where none was stamped */
        struct json_span spans[8];
        const struct json_member *idm;
        int ni = event_identity_spans(b.p, m, k, spans, 8, &idm);
        bad |= (ix.ident_n != 0) != (pid >= 0);
        if (ix.ident_n) {
            bad |= ni != ix.ident_n || idm != &m[0];
            for (int i = 0; !bad && i < ni; i++)
                bad |= spans[i].key != (uint32_t)(m[ix.ident_at + i].key - b.p) ||
                       spans[i].val_len != (uint32_t)m[ix.ident_at + i].val_len;
        }
    }
    if (bad)
        fprintf(stderr, "  index of %s (pid %d): %d members, index %d\n", b.p, (int)pid, k, ix.n);
    buf_free(&b);
    return bad;
}

TEST(stamp_index_gives_the_scanners_members)
{
    static const char *const indexed[] = {
        "{\"eventId\":1}",
        "{\"eventId\":7,\"timestamp\":5,\"pid\":99,\"processName\":\"x\",\"params\":{\"k\":\"v\"}}",
        "{\"eventId\":7,\"pid\":1234,\"params\":{\"a\":[1,{\"b\":\"c,\\\"d\\\":1\"}]},\"x\":-1.5e3,\"y\":0}",
        " { \"eventId\" : 7 , \"a\" : true ,\"b\":false,\"c\" :null, \"s\": \"q\\\"r\" } ",
        "{\"eventId\":7,\"a\":1,\"a\":2,\"processVer\":null,\"params\":{}}",
        "{\"eventId\":7,\"a\":1,\"b\":2,\"a\":3,\"params\":{},\"params\":{\"x\":1},\"pid\":5,\"pid\":6}",
        "{\"eventId\":7,\"processName\":\"a\",\"processName\":\"b\",\"logf\":\"\",\"logf\":\"l\"}",
        "{\"eventId\":7,\"processVer\":\"1\",\"params\":{},\"processName\":\"n\",\"logf\":\"/l\"}",
        "{\"eventId\":7,\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8}",
    };
    for (size_t i = 0; i < sizeof indexed / sizeof indexed[0]; i++) {
        CHECK(index_agrees(indexed[i], 1234, true) == 0);
        CHECK(index_agrees(indexed[i], -1, true) == 0);
        CHECK(index_agrees(indexed[i], getpid(), true) == 0);    /* processName from /proc */
    }
    /* a key a reader must decode, too many members, too long: none */
    CHECK(index_agrees("{\"eventId\":7,\"p\\u0061d\":1}", 1234, false) == 0);
    CHECK(index_agrees("{\"eventId\":7,\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,"
                       "\"i\":9,\"j\":10,\"k\":11}", 1234, false) == 0);
    /* a key of 255 bytes is indexed, one of 256 is not (its length is a byte) */
    for (int kl = 255; kl <= 256; kl++) {
        struct buf key = BUF_INIT;
        buf_puts(&key, "{\"eventId\":7,\"");
        for (int i = 0; i < kl; i++)
            buf_putc(&key, 'k');
        buf_puts(&key, "\":1,\"z\":2}");
        CHECK(index_agrees(key.p, 1234, kl == 255) == 0);
        buf_free(&key);
    }
    struct buf big = BUF_INIT;
    buf_puts(&big, "{\"eventId\":7,\"pad\":\"");
    for (int i = 0; i < 70000; i++)
        buf_putc(&big, 'x');
    buf_puts(&big, "\"}");
    CHECK(index_agrees(big.p, 1234, false) == 0);
    buf_free(&big);
}

TEST(index_that_does_not_fit_its_text_is_refused)
{
    struct buf b = BUF_INIT;
    struct json_index ix;
    uint64_t id;
    const char *err;
    const char *in = "{\"eventId\":7,\"params\":{\"k\":\"v,\\\"w\\\":1\"},\"a\":{\"x\":1,\"y\":2}}";
    REQUIRE(event_stamp(in, strlen(in), 5, 6, &b, &id, &(struct event_index_ask){&ix, NULL, NULL}, &err) == 0);
    REQUIRE(ix.n > 2);
    struct json_member m[EVENT_MEMBERS_MAX];
    REQUIRE(json_index_members(&ix, b.p, b.len, m, EVENT_MEMBERS_MAX) == ix.n);
    CHECK(json_index_members(&ix, b.p, b.len, m, 2) == -1);       /* more than asked for */
    struct json_index t = ix;
    t.len--;                                                      /* another text's */
    CHECK(json_index_members(&t, b.p, b.len, m, EVENT_MEMBERS_MAX) == -1);
    /* every offset moved by one either way, and one pointing into a
     * nested object's key ("y") or a string's (\"w\") */
    for (int i = 0; i < ix.n; i++)
        for (int d = -1; d <= 1; d += 2) {
            t = ix;
            t.key_at[i] = (uint16_t)(t.key_at[i] + d);
            CHECK(json_index_members(&t, b.p, b.len, m, EVENT_MEMBERS_MAX) == -1);
            t = ix;
            t.key_len[i] = (uint8_t)(t.key_len[i] + d);          /* the key's end */
            CHECK(json_index_members(&t, b.p, b.len, m, EVENT_MEMBERS_MAX) == -1);
        }
    /* what the checks cannot see: a comma and a key inside a nested
     * object. The values are not validated here: a reader decodes each
     * with a validating decode first (lua_json_lazy_push) */
    t = ix;
    t.key_at[t.n - 1] = (uint16_t)(strstr(b.p, "\"y\"") - b.p);
    CHECK(json_index_members(&t, b.p, b.len, m, EVENT_MEMBERS_MAX) == t.n);
    CHECK(json_validate(m[t.n - 2].val, m[t.n - 2].val_len, &err) == JSON_INVALID);
    t = ix;
    t.key_at[1] = (uint16_t)(strstr(b.p, "\\\"w") + 1 - b.p);
    CHECK(json_index_members(&t, b.p, b.len, m, EVENT_MEMBERS_MAX) == -1);
    t = ix;
    t.n = 0;
    CHECK(json_index_members(&t, b.p, b.len, m, EVENT_MEMBERS_MAX) == -1);
    buf_free(&b);
}

static bool only_seven(void *ctx, uint64_t event_id)
{
    (void)ctx;
    return event_id == 7;
}

TEST(stamp_indexes_only_what_the_caller_wants)
{
    struct buf a = BUF_INIT, b = BUF_INIT;
    struct json_index ix;
    uint64_t id;
    const char *err;
    const struct event_index_ask ask = {&ix, only_seven, NULL};
    const char *seven = "{\"eventId\":7,\"timestamp\":1,\"params\":{\"k\":1}}",
               *eight = "{\"eventId\":8,\"timestamp\":1,\"params\":{\"k\":1}}";
    REQUIRE(event_stamp(seven, strlen(seven), -1, 0, &a, &id, &ask, &err) == 0);
    CHECK(ix.n == 4);                                   /* eventId, timestamp, processVer, params */
    ix.n = 99;
    REQUIRE(event_stamp(eight, strlen(eight), -1, 0, &b, &id, &ask, &err) == 0);
    CHECK(ix.n == 0);                                   /* none, and said so */
    /* the text is the same either way */
    CHECK(a.len == b.len && memcmp(a.p + 12, b.p + 12, a.len - 12) == 0);
    buf_free(&a);
    buf_free(&b);
}
