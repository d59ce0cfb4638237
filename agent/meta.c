/* Member metadata codec (see meta.h). */
#include "meta.h"

#include <msgpack.h>
#include <string.h>

struct sink {
    uint8_t *out;
    size_t cap, len;
    bool overflow;
};

static int sink_write(void *data, const char *buf, size_t len)
{
    struct sink *s = data;
    if (s->overflow || len > s->cap - s->len) {
        s->overflow = true;
        return -1;
    }
    memcpy(s->out + s->len, buf, len);
    s->len += len;
    return 0;
}

static void put_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

int zpf_meta_encode(const struct zpf_meta *m, uint8_t *out, size_t cap)
{
    struct sink s = {out, cap, 0, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, sink_write);
    msgpack_pack_map(&pk, 5);
    put_str(&pk, "z");
    put_str(&pk, m->zone);
    put_str(&pk, "p");
    put_str(&pk, m->provider);
    put_str(&pk, "i");
    put_str(&pk, m->instance_id);
    put_str(&pk, "t");
    msgpack_pack_map(&pk, m->ntags);
    for (uint32_t i = 0; i < m->ntags; i++) {
        put_str(&pk, m->tags[i].key);
        put_str(&pk, m->tags[i].value);
    }
    put_str(&pk, "k");
    msgpack_pack_uint64(&pk, m->keyring_version);
    return s.overflow ? ZPF_E2BIG : (int)s.len;
}

static int get_str(const msgpack_object *o, char *out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return ZPF_EFIELD;
    if (o->via.str.size >= ZPF_META_STR_MAX ||
        memchr(o->via.str.ptr, '\0', o->via.str.size))
        return ZPF_ELIMIT;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return 0;
}

static bool key_is(const msgpack_object *k, const char *name)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
           memcmp(k->via.str.ptr, name, k->via.str.size) == 0;
}

static int decode_map(const msgpack_object *root, struct zpf_meta *m)
{
    if (root->type != MSGPACK_OBJECT_MAP)
        return ZPF_EFIELD;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *k = &root->via.map.ptr[i].key;
        const msgpack_object *v = &root->via.map.ptr[i].val;
        int rc = 0;
        if (key_is(k, "z")) {
            rc = get_str(v, m->zone);
        } else if (key_is(k, "p")) {
            rc = get_str(v, m->provider);
        } else if (key_is(k, "i")) {
            rc = get_str(v, m->instance_id);
        } else if (key_is(k, "k")) {
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return ZPF_EFIELD;
            m->keyring_version = v->via.u64;
        } else if (key_is(k, "t")) {
            if (v->type != MSGPACK_OBJECT_MAP)
                return ZPF_EFIELD;
            if (v->via.map.size > ZPF_META_TAGS_MAX)
                return ZPF_ELIMIT;
            m->ntags = 0;
            for (uint32_t j = 0; j < v->via.map.size && rc == 0; j++) {
                struct zpf_meta_tag *t = &m->tags[m->ntags++];
                rc = get_str(&v->via.map.ptr[j].key, t->key);
                if (rc == 0)
                    rc = get_str(&v->via.map.ptr[j].val, t->value);
            }
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int zpf_meta_decode(const uint8_t *buf, size_t len, struct zpf_meta *m)
{
    memset(m, 0, sizeof *m);
    if (len == 0)
        return 0;
    if (len > ZPF_META_MAX)
        return ZPF_ELIMIT;
    /* Bounded: at most ZPF_META_MAX input bytes, so the zone stays small. */
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 2048))
        return ZPF_ENOMEM;
    msgpack_object root;
    size_t off = 0;
    msgpack_unpack_return ur =
        msgpack_unpack(buf == NULL ? "" : (const char *)buf, len, &off, &zone,
                       &root);
    int rc = ur == MSGPACK_UNPACK_SUCCESS && off == len ? decode_map(&root, m)
                                                        : ZPF_EMSGPACK;
    msgpack_zone_destroy(&zone);
    if (rc < 0)
        memset(m, 0, sizeof *m);
    return rc;
}
