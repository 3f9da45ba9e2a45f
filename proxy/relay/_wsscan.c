/* The frame scanner's usual case, in C (the rules themselves: proxy/relay/wsframes.py).
 *
 * The byte tunnel feeds every chunk it reads to a FrameScanner, once per direction: it is
 * the hot path of an identity connection. This type holds the scanner's state and walks
 * the chunks that hold only the usual: whole frame headers of data frames, pings and
 * pongs, payloads skipped by arithmetic, and (with turn observation) a text message's
 * type read where every producer writes it, `{"type": "...`. Anything else (a header cut
 * by the chunk's end, a close frame, a protocol violation, a message over the limit, a
 * type the usual prefix does not settle, a scanner that already failed) goes to the
 * Python walk (`_walk`) for the whole chunk: this walk changes no state until it has
 * walked the whole chunk, so handing over is always safe. Both walks answer alike for
 * every stream; tests/unit/proxy/relay/test_wsscan_native.py holds them to that.
 *
 * The state is members, with the Python walk's names, so one object serves both walks.
 * No member can hold a reference cycle (bytes, a small int, a _Prefix of bytes), so the
 * object is not tracked by the garbage collector: an idle connection costs less.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define KIND_CONTROL 0
#define KIND_DATA 1
#define KIND_LAST 2
#define OP_CONTINUATION 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_PING 0x9
#define OP_PONG 0xA
#define RSV1 0x40
#define MAX_LENGTH INT64_MAX
#define PREFIX "{\"type\":"
#define PREFIX_LEN 8
#define MAX_TYPES 64
#define MAX_TYPE_LEN 64
#define MAX_CODES 1024 /* codes one chunk may report here; more go to the Python walk */

typedef struct {
    PyObject_HEAD
    long long need;          /* payload bytes of the current frame not seen yet */
    long long msg_bytes;     /* payload of the current message so far */
    long long limit;         /* max_message_bytes, or MAX_LENGTH for none */
    long long max_message_bytes;
    int kind;                /* KIND_*: what the current frame is */
    int mask_bit;            /* 0x80 for a client's stream, 0 for a server's */
    int rsv;                 /* reserved bits that break the protocol */
    int error;               /* 0, or the close code the stream failed with */
    char fragmented;         /* inside a message whose last frame has not come */
    char closed;             /* a close frame has been seen */
    char masked;
    char queueing;           /* count a client's turn messages instead of reporting them */
    long long queued;        /* ... counted so far */
    PyObject *stash;         /* bytes: an unfinished header or close frame, held */
    PyObject *typing;        /* False: not observing; None: between messages; a _Prefix */
    PyObject *close_code;    /* int or None */
} ScanCore;

typedef struct {
    unsigned char name[MAX_TYPE_LEN];
    Py_ssize_t len;
    int code;
} TypeCode;

typedef struct {
    TypeCode entries[MAX_TYPES];
    int count;
} TypeTable;

/* Set once by configure() from proxy/relay/turnscan.py's tables. */
static TypeTable client_types, server_types;
static Py_ssize_t max_value = 0;    /* the longest type value the fast path looks up */
static PyTypeObject *scan_type = NULL; /* wsframes.Scan */
static PyObject *walk_name = NULL;     /* "_walk" */

/* The code of a type value: its entry's, or 0 (a type, not one watched). */
static int
lookup(const TypeTable *table, const unsigned char *value, Py_ssize_t len)
{
    for (int i = 0; i < table->count; i++) {
        const TypeCode *e = &table->entries[i];
        if (e->len == len && memcmp(e->name, value, (size_t)len) == 0) {
            return e->code;
        }
    }
    return 0;
}

static inline uint64_t
load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Unmasks payload[from:to) into window[from:...]: eight bytes at a time while the payload
 * has eight more (so possibly past `to`, never past `avail`), then one at a time. `from`
 * is 0 or a value this returned, so every word starts at a multiple of 4 and the mask
 * repeated twice (`key64`) lines up with it. Returns how far the window is ready. */
static Py_ssize_t
unmask(unsigned char *window, const unsigned char *payload, Py_ssize_t from, Py_ssize_t to,
       Py_ssize_t avail, uint64_t key64, const unsigned char *key)
{
    while (from < to) {
        if (from + 8 <= avail) {
            uint64_t w = load64(payload + from) ^ key64;
            memcpy(window + from, &w, 8);
            from += 8;
        }
        else {
            window[from] = payload[from] ^ key[from & 3];
            from++;
        }
    }
    return from;
}

/* A text message's code from its first `avail` payload bytes (unmasked with `key` when
 * not NULL), or -1 when the usual prefix does not settle it (the Python walk reads on).
 * This runs for every text frame: a client's bytes are unmasked only as far as the
 * closing quote, a word at a time. */
static int
type_code(const unsigned char *payload, Py_ssize_t avail, const unsigned char *key,
          const TypeTable *table)
{
    unsigned char window[PREFIX_LEN + 2 + MAX_TYPE_LEN + 1 + 8];
    Py_ssize_t span = PREFIX_LEN + 2 + max_value + 1; /* enough for the longest type */
    if (span > avail) {
        span = avail;
    }
    if (span < PREFIX_LEN + 2) {
        return -1;
    }
    const unsigned char *b = payload;
    Py_ssize_t ready = span;
    uint64_t key64 = 0;
    if (key != NULL) {
        memcpy(&key64, key, 4);
        memcpy((unsigned char *)&key64 + 4, key, 4);
        b = window;
        ready = unmask(window, payload, 0, PREFIX_LEN + 2, avail, key64, key);
    }
    if (load64(b) != load64((const unsigned char *)PREFIX)) {
        return -1;
    }
    Py_ssize_t q = PREFIX_LEN;
    if (b[q] == ' ') {
        q++;
    }
    if (b[q] != '"') {
        return -1;
    }
    Py_ssize_t end = q + 2 + max_value; /* as turnscan.type_code bounds its search */
    if (end > span) {
        end = span;
    }
    for (Py_ssize_t i = q + 1; i < end; i++) {
        if (i >= ready) {
            ready = unmask(window, payload, ready, i + 1, avail, key64, key);
        }
        if (b[i] == '"') {
            if (memchr(b + q + 1, '\\', (size_t)(i - q - 1)) != NULL) {
                return -1; /* an escape: the JSON reading decides */
            }
            return lookup(table, b + q + 1, i - q - 1);
        }
    }
    return -1;
}

/* The Python walk's Scan for a chunk, its codes counted instead while queueing. */
static PyObject *
hand_over(ScanCore *self, PyObject *data)
{
    PyObject *scan = PyObject_CallMethodOneArg((PyObject *)self, walk_name, data);
    if (scan == NULL || !self->queueing || !PyTuple_Check(scan) || PyTuple_GET_SIZE(scan) != 9) {
        return scan;
    }
    PyObject *events = PyTuple_GET_ITEM(scan, 8);
    int64_t bits = PyLong_Check(events) ? (int64_t)_PyLong_NumBits(events) : -1;
    if (bits <= 0) {
        return scan; /* no codes (or not a count: left as it is) */
    }
    self->queued += (bits + 3) / 4; /* one code per four bits (turnscan.code_count) */
    PyObject *counted = scan_type->tp_alloc(scan_type, 9);
    if (counted == NULL) {
        Py_DECREF(scan);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < 8; i++) {
        PyTuple_SET_ITEM(counted, i, Py_NewRef(PyTuple_GET_ITEM(scan, i)));
    }
    PyTuple_SET_ITEM(counted, 8, PyLong_FromLong(0));
    Py_DECREF(scan);
    return counted;
}

static PyObject *
make_scan(long long messages, long long nbytes, int at_boundary, PyObject *events)
{
    PyObject *scan = scan_type->tp_alloc(scan_type, 9);
    if (scan == NULL) {
        Py_DECREF(events);
        return NULL;
    }
    PyObject *m = PyLong_FromLongLong(messages);
    PyObject *b = PyLong_FromLongLong(nbytes);
    if (m == NULL || b == NULL) {
        Py_XDECREF(m);
        Py_XDECREF(b);
        Py_DECREF(events);
        Py_DECREF(scan);
        return NULL;
    }
    PyObject *zero = PyLong_FromLong(0);
    PyTuple_SET_ITEM(scan, 0, m);
    PyTuple_SET_ITEM(scan, 1, b);
    PyTuple_SET_ITEM(scan, 2, Py_NewRef(at_boundary ? Py_True : Py_False));
    PyTuple_SET_ITEM(scan, 3, Py_NewRef(zero));
    PyTuple_SET_ITEM(scan, 4, Py_NewRef(Py_False));
    PyTuple_SET_ITEM(scan, 5, Py_NewRef(Py_None));
    PyTuple_SET_ITEM(scan, 6, Py_NewRef(zero));
    PyTuple_SET_ITEM(scan, 7, zero);
    PyTuple_SET_ITEM(scan, 8, events);
    return scan;
}

/* The packed codes (wsframes.Scan.events): four bits each, the first highest. */
static PyObject *
pack_codes(const char *hex, int count, uint64_t packed)
{
    if (count <= 15) {
        return PyLong_FromUnsignedLongLong(packed);
    }
    return PyLong_FromString(hex, NULL, 16);
}

static PyObject *
ScanCore_feed(ScanCore *self, PyObject *data)
{
    if (scan_type == NULL || !PyBytes_CheckExact(data) || self->error || PyBytes_GET_SIZE(self->stash) != 0 ||
        (self->typing != Py_False && self->typing != Py_None)) {
        return hand_over(self, data);
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
    const Py_ssize_t n = PyBytes_GET_SIZE(data);
    const int observing = self->typing == Py_None;
    const int mask_bit = self->mask_bit;
    const TypeTable *table = mask_bit ? &client_types : &server_types;
    long long need = self->need;
    long long msg_bytes = self->msg_bytes;
    int kind = self->kind;
    int fragmented = self->fragmented;
    long long messages = 0, nbytes = 0;
    Py_ssize_t pos = 0;
    char hex[MAX_CODES + 1];
    int count = 0;
    uint64_t packed = 0;
    int at_boundary;

    for (;;) {
        if (need) {
            long long left = (long long)(n - pos);
            long long take = need <= left ? need : left;
            if (kind != KIND_CONTROL) {
                nbytes += take;
            }
            pos += (Py_ssize_t)take;
            need -= take;
            if (need) {
                at_boundary = 0;
                break;
            }
            if (kind == KIND_LAST) {
                messages++;
            }
        }
        if (pos == n) {
            at_boundary = 1;
            break;
        }
        if (n - pos < 2) {
            return hand_over(self, data); /* a header cut by the chunk's end */
        }
        const unsigned char b0 = p[pos], b1 = p[pos + 1];
        long long ln = b1 & 0x7F;
        Py_ssize_t hl = (ln < 126 ? 2 : ln == 126 ? 4 : 10) + ((b1 & 0x80) ? 4 : 0);
        if (n - pos < hl) {
            return hand_over(self, data);
        }
        if (ln == 126) {
            ln = (long long)p[pos + 2] << 8 | p[pos + 3];
        }
        else if (ln == 127) {
            uint64_t v = 0;
            for (int i = 2; i < 10; i++) {
                v = v << 8 | p[pos + i];
            }
            if (v > (uint64_t)MAX_LENGTH) {
                return hand_over(self, data);
            }
            ln = (long long)v;
        }
        const int op = b0 & 0x0F;
        const int fin = b0 & 0x80;
        if ((b1 & 0x80) != mask_bit || (b0 & self->rsv)) {
            return hand_over(self, data);
        }
        if (op == OP_TEXT || op == OP_BINARY) {
            if (fragmented || ln > self->limit) {
                return hand_over(self, data);
            }
            msg_bytes = ln;
        }
        else if (op == OP_CONTINUATION) {
            if (!fragmented) {
                return hand_over(self, data);
            }
            msg_bytes = ln > MAX_LENGTH - msg_bytes ? MAX_LENGTH : msg_bytes + ln;
            if (msg_bytes > self->limit) {
                return hand_over(self, data);
            }
        }
        else if (op == OP_PING || op == OP_PONG) {
            if (!fin || ln > 125) {
                return hand_over(self, data);
            }
        }
        else {
            return hand_over(self, data); /* a close frame, or a reserved opcode */
        }
        if (op <= OP_BINARY) {
            fragmented = !fin;
            kind = fin ? KIND_LAST : KIND_DATA;
        }
        else {
            kind = KIND_CONTROL;
        }
        pos += hl;
        need = ln;
        if (observing && op == OP_TEXT && !(b0 & RSV1)) {
            long long left = (long long)(n - pos);
            Py_ssize_t avail = (Py_ssize_t)(ln < left ? ln : left);
            int code = type_code(p + pos, avail, mask_bit ? p + pos - 4 : NULL, table);
            if (code < 0) {
                return hand_over(self, data);
            }
            if (code > 0) {
                if (count == MAX_CODES) {
                    return hand_over(self, data);
                }
                hex[count++] = "0123456789abcdef"[code & 0xF];
                packed = packed << 4 | (uint64_t)code;
            }
        }
        if (!ln && kind == KIND_LAST) {
            messages++;
        }
    }
    if (count && self->queueing) {
        self->queued += count; /* they wait behind the open turn: a count is all it needs */
        count = 0;
        packed = 0;
    }
    hex[count] = '\0';
    PyObject *events = pack_codes(hex, count, packed);
    if (events == NULL) {
        return NULL;
    }
    self->need = need;
    self->msg_bytes = msg_bytes;
    self->kind = kind;
    self->fragmented = (char)fragmented;
    return make_scan(messages, nbytes, at_boundary, events);
}

static PyObject *
ScanCore_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    ScanCore *self = (ScanCore *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->limit = MAX_LENGTH;
    self->stash = PyBytes_FromStringAndSize(NULL, 0);
    self->typing = Py_NewRef(Py_False);
    self->close_code = Py_NewRef(Py_None);
    if (self->stash == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
ScanCore_dealloc(ScanCore *self)
{
    /* A Python subclass's reference to its type is dropped by CPython's subtype_dealloc,
     * which calls this one: a static base does not touch it. */
    Py_XDECREF(self->stash);
    Py_XDECREF(self->typing);
    Py_XDECREF(self->close_code);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef ScanCore_members[] = {
    {"_need", T_LONGLONG, offsetof(ScanCore, need), 0, NULL},
    {"_msg_bytes", T_LONGLONG, offsetof(ScanCore, msg_bytes), 0, NULL},
    {"_limit", T_LONGLONG, offsetof(ScanCore, limit), 0, NULL},
    {"max_message_bytes", T_LONGLONG, offsetof(ScanCore, max_message_bytes), 0, NULL},
    {"_kind", T_INT, offsetof(ScanCore, kind), 0, NULL},
    {"_mask_bit", T_INT, offsetof(ScanCore, mask_bit), 0, NULL},
    {"_rsv", T_INT, offsetof(ScanCore, rsv), 0, NULL},
    {"_error", T_INT, offsetof(ScanCore, error), 0, NULL},
    {"_fragmented", T_BOOL, offsetof(ScanCore, fragmented), 0, NULL},
    {"closed", T_BOOL, offsetof(ScanCore, closed), 0, NULL},
    {"masked", T_BOOL, offsetof(ScanCore, masked), 0, NULL},
    {"queueing", T_BOOL, offsetof(ScanCore, queueing), 0, NULL},
    {"queued", T_LONGLONG, offsetof(ScanCore, queued), 0, NULL},
    {"_stash", T_OBJECT_EX, offsetof(ScanCore, stash), 0, NULL},
    {"_typing", T_OBJECT_EX, offsetof(ScanCore, typing), 0, NULL},
    {"close_code", T_OBJECT_EX, offsetof(ScanCore, close_code), 0, NULL},
    {NULL},
};

static PyMethodDef ScanCore_methods[] = {
    {"feed", (PyCFunction)ScanCore_feed, METH_O,
     "Walk the frame headers of the next chunk of the stream (see wsframes)."},
    {NULL},
};

static PyTypeObject ScanCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "strangler.proxy.relay._wsscan.ScanCore",
    .tp_basicsize = sizeof(ScanCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A frame scanner's state, and its walk of the usual chunk.",
    .tp_new = ScanCore_new,
    .tp_dealloc = (destructor)ScanCore_dealloc,
    .tp_members = ScanCore_members,
    .tp_methods = ScanCore_methods,
};

static int
fill_table(TypeTable *table, PyObject *codes)
{
    if (!PyDict_Check(codes)) {
        PyErr_SetString(PyExc_TypeError, "codes must be a dict of bytes to int");
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t i = 0;
    table->count = 0;
    while (PyDict_Next(codes, &i, &key, &value)) {
        if (!PyBytes_Check(key) || !PyLong_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "codes must be a dict of bytes to int");
            return -1;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(key);
        long code = PyLong_AsLong(value);
        if (table->count == MAX_TYPES || len > MAX_TYPE_LEN || code < 1 || code > 15) {
            PyErr_SetString(PyExc_ValueError, "too many types, a type too long, or a code "
                                              "outside 1-15");
            return -1;
        }
        TypeCode *e = &table->entries[table->count++];
        memcpy(e->name, PyBytes_AS_STRING(key), (size_t)len);
        e->len = len;
        e->code = (int)code;
    }
    return 0;
}

static PyObject *
configure(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *scan, *client, *server;
    Py_ssize_t longest;
    if (!PyArg_ParseTuple(args, "O!OOn", &PyType_Type, &scan, &client, &server, &longest)) {
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)scan, &PyTuple_Type) || longest < 1 ||
        longest > MAX_TYPE_LEN) {
        PyErr_SetString(PyExc_ValueError, "scan must be a tuple type; 1 <= longest <= 64");
        return NULL;
    }
    if (fill_table(&client_types, client) < 0 || fill_table(&server_types, server) < 0) {
        return NULL;
    }
    Py_XSETREF(scan_type, (PyTypeObject *)Py_NewRef(scan));
    max_value = longest;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(Scan, client_codes, server_codes, longest): the result type, the watched "
     "types' codes per direction, the longest type value looked up."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "strangler.proxy.relay._wsscan",
    .m_doc = "The frame scanner's usual case, in C (see proxy/relay/wsframes.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__wsscan(void)
{
    if (PyType_Ready(&ScanCoreType) < 0) {
        return NULL;
    }
    walk_name = PyUnicode_InternFromString("_walk");
    if (walk_name == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "ScanCore", (PyObject *)&ScanCoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
