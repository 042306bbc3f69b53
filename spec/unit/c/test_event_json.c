/* test_event_json.c - event validation and identity stamping. */
#include "harness.h"
#include "wire/event_json.h"
#include "wire/json_scan.h"

#include <string.h>

static int stamp(const char *in, struct buf *out, uint64_t *id, const char **err)
{
    buf_reset(out);
    return event_stamp(in, strlen(in), 1234, 1000, out, id, err);
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
