#include "zpf/error.h"

const char *zpf_strerror(int err)
{
    switch (err) {
#define ZPF__ERR_MSG(name, val, msg) case val: return msg;
    ZPF_ERRNO_MAP(ZPF__ERR_MSG)
#undef ZPF__ERR_MSG
    }
    return "unknown error";
}

const char *zpf_err_name(int err)
{
    switch (err) {
#define ZPF__ERR_NAME(name, val, msg) case val: return #name;
    ZPF_ERRNO_MAP(ZPF__ERR_NAME)
#undef ZPF__ERR_NAME
    }
    return "UNKNOWN";
}
