/* Cupola's CSV fast path: one pass from bytes to Arrow buffers, and the numeric columns' statistics.
 *
 * Built by setup.py as webapp.datasets._csvscan (optional: without a C compiler ingestion uses
 * pyarrow's reader and NumPy, slower and the same results). Every function releases the GIL while
 * it works, so blocks of one file are parsed on as many threads as there are cores.
 *
 *   parse(data, kinds, delimiter, skip_rows, nulls, trues, falses, outputs, capacity)
 *       -> (status, rows, error_row, error_column, null_counts, string_lengths)
 *   count_lines(data) -> number of b"\n"
 *   float_stats(values, validity, offset, length, row_hashes, present, limit, weight[, counts, edges])
 *       -> (missing, n_finite,
 *       low, high, finite_low, finite_high, mean, m2, n_present_up_to_limit)
 *   int_stats(values, validity, offset, length, row_hashes, present, limit, weight) -> (missing, low, high,
 *       n_present_up_to_limit)
 *   float_range(values, validity, offset, length) -> (finite_low, finite_high)
 *   string_hashes(offsets, data, offset, length, hashes)
 *   string_codes(offsets, data, validity, offset, length, codes, hashes, firsts) -> distinct values or -1
 *
 * parse() reads whole rows (a chunk cut after a newline). Columns are typed beforehand: b'f' float64,
 * b'b' boolean, b'd' date32 (YYYY-MM-DD), b's' string. It writes Arrow's layouts into buffers the
 * caller allocated: validity bitmaps (all ones from the caller: a null clears its bit), boolean
 * bitmaps (zeroed by the caller), float64 values (NaN under a null), int32 days since 1970-01-01
 * (0 under a null), int32 offsets and UTF-8
 * bytes (not validated here: the caller validates string arrays). A status other than OK means the
 * caller must decide; nothing here guesses:
 *   BAD_VALUE       error_column's field at error_row is not of the column's type
 *   BAD_ROW         row error_row has a different number of fields
 *   QUOTED_NEWLINE  a quoted field holds a line break or is never closed (rows may span lines)
 *   LONE_CR         a carriage return that does not end a Windows line
 *   FULL            more rows or bytes than the buffers hold
 * Field rules follow pyarrow.csv as Cupola configures it: RFC 4180 quotes with "" for a quote, a field
 * equal to a null token is null (quoted or not), numbers may have blanks around them, empty lines are
 * skipped, a line ends with \n or \r\n.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { OK = 0, BAD_VALUE = 1, BAD_ROW = 2, QUOTED_NEWLINE = 3, LONE_CR = 4, FULL = 5 };

#define MAX_TOKENS 16
#define SCRATCH 512

typedef struct {
    const char *text[MAX_TOKENS];
    Py_ssize_t length[MAX_TOKENS];
    int count;
    Py_ssize_t longest;
} Tokens;

typedef struct {
    char kind;
    Py_buffer values, validity, data; /* values: float64 / bitmap / int32 offsets; data: string bytes */
    Py_ssize_t nulls, used;
} Column;

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline int matches(const Tokens *tokens, const char *s, Py_ssize_t n) {
    if (n > tokens->longest) return 0;
    for (int i = 0; i < tokens->count; i++) {
        const char *t = tokens->text[i];
        if (tokens->length[i] == n && (n == 0 || (t[0] == s[0] && memcmp(t + 1, s + 1, (size_t)(n - 1)) == 0)))
            return 1;
    }
    return 0;
}

static int lower_equals(const char *s, Py_ssize_t n, const char *word) {
    Py_ssize_t len = (Py_ssize_t)strlen(word);
    if (n != len) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != word[i]) return 0;
    }
    return 1;
}

/* [*p, *q) without the blanks (spaces, tabs) around it, as pyarrow trims numbers and dates. */
static inline void trim_blanks(const char **p, const char **q) {
    while (*p < *q && (**p == ' ' || **p == '\t')) ++*p;
    while (*q > *p && ((*q)[-1] == ' ' || (*q)[-1] == '\t')) --*q;
}

/* A decimal number, inf/infinity or nan (any case, signed), with blanks around it. Exact: the
 * fast path is Clinger's (mantissa <= 2^53 and |exponent| <= 22 make one correctly rounded
 * operation); anything else goes to strtod, which rounds correctly. */
static int parse_double(const char *p, const char *q, double *out) {
    trim_blanks(&p, &q);
    if (p == q) return 0;
    const char *start = p;
    int negative = 0;
    if (*p == '-' || *p == '+') negative = *p++ == '-';
    if (p < q && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) {
        Py_ssize_t n = q - p;
        if (lower_equals(p, n, "inf") || lower_equals(p, n, "infinity")) *out = negative ? -INFINITY : INFINITY;
        else if (lower_equals(p, n, "nan")) *out = NAN;
        else return 0;
        return 1;
    }
    uint64_t mantissa = 0;
    int digits = 0, significant = 0;
    long exponent = 0;
    for (; p < q && *p >= '0' && *p <= '9'; p++, digits++) {
        if (mantissa || *p != '0') significant++;
        if (significant <= 19) mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        else exponent++;
    }
    if (p < q && *p == '.') {
        for (p++; p < q && *p >= '0' && *p <= '9'; p++, digits++) {
            if (mantissa || *p != '0') significant++;
            if (significant <= 19) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                exponent--;
            }
        }
    }
    if (!digits) return 0;
    if (p < q && (*p == 'e' || *p == 'E')) {
        p++;
        int exponent_negative = 0;
        if (p < q && (*p == '-' || *p == '+')) exponent_negative = *p++ == '-';
        if (p == q || *p < '0' || *p > '9') return 0;
        long written = 0;
        for (; p < q && *p >= '0' && *p <= '9'; p++)
            if (written < 100000) written = written * 10 + (*p - '0');
        exponent += exponent_negative ? -written : written;
    }
    if (p != q) return 0;
    if (mantissa == 0) {
        *out = negative ? -0.0 : 0.0;
        return 1;
    }
    if (significant <= 19 && mantissa <= (1ULL << 53) && exponent >= -22 && exponent <= 22) {
        double value = (double)mantissa;
        value = exponent < 0 ? value / POW10[-exponent] : value * POW10[exponent];
        *out = negative ? -value : value;
        return 1;
    }
    char text[SCRATCH];
    Py_ssize_t n = q - start;
    if (n >= SCRATCH) return 0;
    memcpy(text, start, (size_t)n);
    text[n] = '\0';
    char *end;
    *out = strtod(text, &end);
    return end == text + n;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SWAR_DIGITS 1
/* How many of the eight bytes (first in memory = lowest) are digits before the first that is not.
 * A byte below '0' borrows and one above '9' carries into its high bit; digits before it do neither,
 * so the lowest flagged byte is exact whatever follows (simdjson's test, made positional). */
static inline int leading_digits(uint64_t x) {
    uint64_t flagged = ((x + 0x4646464646464646ULL) | (x - 0x3030303030303030ULL)) & 0x8080808080808080ULL;
    return flagged ? __builtin_ctzll(flagged) >> 3 : 8;
}

/* The value of the first n (1..8) digit bytes of x: moved to the top, with zeros before them,
 * then fast_float's eight-digit multiply. */
static inline uint64_t digits_value(uint64_t x, int n) {
    x = (x - 0x3030303030303030ULL) << (8 * (8 - n));
    x = x * 10 + (x >> 8);
    return (((x & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) +
            (((x >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32;
}
#endif

static const uint64_t POW10_INT[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

/* The common case in one pass: [-]digits[.digits], at most 19 digits, exactly representable
 * by Clinger's rule. Returns the end of the number, or NULL where parse_double must decide.
 * Eight bytes at a time where 16 remain: runs of up to seven digits convert without a branch
 * per digit. */
static inline const char *plain_number(const char *p, const char *end, double *out) {
    int negative = p < end && *p == '-';
    p += negative;
    uint64_t mantissa = 0;
    int digits = 0, fraction = 0;
#ifdef SWAR_DIGITS
    if (end - p >= 16) {
        uint64_t x;
        memcpy(&x, p, 8);
        int n = leading_digits(x);
        if (n < 8) {
            if (n) mantissa = digits_value(x, n);
            p += n;
            digits = n;
            if (*p == '.') {
                memcpy(&x, p + 1, 8);
                int m = leading_digits(x);
                if (m < 8) {
                    if (m) mantissa = mantissa * POW10_INT[m] + digits_value(x, m);
                    p += 1 + m;
                    digits += m;
                    fraction = m;
                    goto done;
                }
                mantissa = 0;
                digits = 0;
                p -= n; /* eight fraction digits or more: the loop below */
            } else {
                goto done;
            }
        }
    }
#endif
    for (; p < end && (unsigned)(*p - '0') < 10; p++, digits++) mantissa = mantissa * 10 + (uint64_t)(*p - '0');
    if (p < end && *p == '.') {
        const char *start = ++p;
        for (; p < end && (unsigned)(*p - '0') < 10; p++) mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        fraction = (int)(p - start);
        digits += fraction;
    }
#ifdef SWAR_DIGITS
done:
#endif
    if (!digits || digits > 19 || fraction > 22 || mantissa > (1ULL << 53)) return NULL;
    double value = (double)mantissa;
    if (fraction) value /= POW10[fraction];
    *out = negative ? -value : value;
    return p;
}

static inline void set_bit(uint8_t *bits, Py_ssize_t i) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); }
static inline void clear_bit(uint8_t *bits, Py_ssize_t i) { bits[i >> 3] &= (uint8_t)~(1u << (i & 7)); }

typedef struct {
    const char *p, *end;
    char delimiter;
    uint64_t delimiters; /* the delimiter in every byte */
    int status;
} Cursor;

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* The first delimiter, \n or \r at or after p (or end). Eight bytes at a time where words are
 * little-endian: a zero byte of x ^ pattern is a match, and the lowest flagged byte is exact. */
static inline const char *field_end(const char *p, const char *end, char delimiter, uint64_t delimiters) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; end - p >= 8; p += 8) {
        uint64_t x, a, b, c;
        memcpy(&x, p, 8);
        a = x ^ delimiters;
        b = x ^ (ONES * '\n');
        c = x ^ (ONES * '\r');
        uint64_t found = ((a - ONES) & ~a) | ((b - ONES) & ~b) | ((c - ONES) & ~c);
        found &= HIGHS;
        if (found) return p + (__builtin_ctzll(found) >> 3);
    }
#endif
    while (p < end && *p != delimiter && *p != '\n' && *p != '\r') p++;
    return p;
}

/* The next field's content, unquoted into dest (capacity cap) when quoted or when copy is set;
 * otherwise pointed at in place. Leaves the cursor on the delimiter, line break or end. */
static Py_ssize_t read_field(Cursor *c, char *dest, Py_ssize_t cap, int copy, const char **text) {
    const char *p = c->p, *end = c->end;
    const char delimiter = c->delimiter;
    if (p < end && *p == '"') {
        Py_ssize_t n = 0;
        p++;
        for (;;) {
            const char *quote = memchr(p, '"', (size_t)(end - p));
            if (!quote || memchr(p, '\n', (size_t)(quote - p)) || memchr(p, '\r', (size_t)(quote - p))) {
                c->status = QUOTED_NEWLINE;
                return -1;
            }
            Py_ssize_t part = quote - p;
            if (n + part + 1 > cap) {
                c->status = n + part + 1 > SCRATCH && cap == SCRATCH ? BAD_VALUE : FULL;
                return -1;
            }
            memcpy(dest + n, p, (size_t)part);
            n += part;
            p = quote + 1;
            if (p < end && *p == '"') {
                dest[n++] = '"';
                p++;
                continue;
            }
            break;
        }
        while (p < end && *p != delimiter && *p != '\n' && *p != '\r') { /* text after the closing quote */
            if (n + 1 > cap) {
                c->status = cap == SCRATCH ? BAD_VALUE : FULL;
                return -1;
            }
            dest[n++] = *p++;
        }
        c->p = p;
        *text = dest;
        return n;
    }
    const char *start = p;
    p = field_end(p, end, delimiter, c->delimiters);
    Py_ssize_t n = p - start;
    c->p = p;
    if (copy) {
        if (n > cap) {
            c->status = FULL;
            return -1;
        }
        memcpy(dest, start, (size_t)n);
        *text = dest;
    } else {
        *text = start;
    }
    return n;
}

/* Past the end of a line: 1 at a line break (consumed), 0 at the end of the data, -1 for a lone \r. */
static int end_of_line(Cursor *c) {
    if (c->p >= c->end) return 0;
    if (*c->p == '\n') {
        c->p++;
        return 1;
    }
    if (*c->p == '\r') {
        if (c->p + 1 < c->end && c->p[1] == '\n') {
            c->p += 2;
            return 1;
        }
        return -1;
    }
    return 2; /* a delimiter */
}

static const uint8_t DAYS_IN_MONTH[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's days_from_civil). */
static int32_t days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const int yoe = y - era * 400;
    const int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* A date as pyarrow's date32 conversion reads one: YYYY-MM-DD, blanks around it allowed, a day that
 * exists (leap years included). 1 and *out = days since 1970-01-01, or 0. */
static int parse_date(const char *p, const char *q, int32_t *out) {
    trim_blanks(&p, &q);
    if (q - p != 10 || p[4] != '-' || p[7] != '-') return 0;
    static const int at[8] = {0, 1, 2, 3, 5, 6, 8, 9};
    int digit[8];
    for (int k = 0; k < 8; k++) {
        if (p[at[k]] < '0' || p[at[k]] > '9') return 0;
        digit[k] = p[at[k]] - '0';
    }
    const int y = digit[0] * 1000 + digit[1] * 100 + digit[2] * 10 + digit[3];
    const int m = digit[4] * 10 + digit[5], d = digit[6] * 10 + digit[7];
    const int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m < 1 || m > 12 || d < 1 || d > DAYS_IN_MONTH[m] + (m == 2 && leap)) return 0;
    *out = days_from_civil(y, m, d);
    return 1;
}

typedef struct {
    Column *columns;
    Py_ssize_t ncols, capacity, rows, error_row, error_column;
    int skip_rows, plain_numbers; /* plain_numbers: no null token reads as a number */
    Tokens nulls, trues, falses;
} Parse;

static int parse_rows(Parse *job, Cursor *c) {
    char scratch[SCRATCH];
    Py_ssize_t row = 0;
    int skipping = job->skip_rows;
    while (c->p < c->end) {
        if (*c->p == '\n') { /* an empty line */
            c->p++;
            continue;
        }
        if (*c->p == '\r') {
            if (c->p + 1 < c->end && c->p[1] == '\n') {
                c->p += 2;
                continue;
            }
            job->error_row = row;
            return LONE_CR;
        }
        if (!skipping && row >= job->capacity) return FULL;
        for (Py_ssize_t i = 0; i < job->ncols; i++) {
            Column *column = &job->columns[i];
            const char *text;
            Py_ssize_t n;
            int is_string = column->kind == 's' && !skipping;
            if (column->kind == 'f' && !skipping && job->plain_numbers) {
                const char *after = plain_number(c->p, c->end, &((double *)column->values.buf)[row]);
                if (after) { /* the field must end here: at the delimiter, or the line's end if last */
                    int last = i + 1 == job->ncols;
                    if (after < c->end && *after == c->delimiter && !last) {
                        c->p = after + 1;
                        continue;
                    }
                    if (last && (after == c->end || *after == '\n')) {
                        c->p = after + (after < c->end);
                        continue;
                    }
                } /* anything else (\r, a ragged row, more text) the general path below sorts out */
            }
            if (is_string) {
                n = read_field(c, (char *)column->data.buf + column->used, column->data.len - column->used, 1, &text);
            } else {
                n = read_field(c, scratch, SCRATCH, 0, &text);
            }
            job->error_row = row;
            job->error_column = i;
            if (n < 0) return c->status;
            int after = end_of_line(c);
            if (after == -1) return LONE_CR;
            if ((i + 1 < job->ncols) != (after == 2)) return BAD_ROW;
            if (after == 2) c->p++;
            if (skipping) continue;
            if (matches(&job->nulls, text, n)) {
                column->nulls++;
                clear_bit(column->validity.buf, row);
                if (column->kind == 'f') ((double *)column->values.buf)[row] = NAN;
                else if (column->kind == 'd') ((int32_t *)column->values.buf)[row] = 0;
                else if (column->kind == 's') ((int32_t *)column->values.buf)[row + 1] = (int32_t)column->used;
                continue;
            }
            if (column->kind == 'f') {
                if (!parse_double(text, text + n, &((double *)column->values.buf)[row])) return BAD_VALUE;
            } else if (column->kind == 'b') {
                if (matches(&job->trues, text, n)) set_bit(column->values.buf, row);
                else if (!matches(&job->falses, text, n)) return BAD_VALUE;
            } else if (column->kind == 'd') {
                if (!parse_date(text, text + n, &((int32_t *)column->values.buf)[row])) return BAD_VALUE;
            } else {
                column->used += n;
                if (column->used > INT32_MAX) return FULL;
                ((int32_t *)column->values.buf)[row + 1] = (int32_t)column->used;
            }
        }
        if (skipping) skipping--;
        else row++;
    }
    job->rows = row;
    return OK;
}

static int read_tokens(PyObject *sequence, Tokens *tokens, const char *what) {
    PyObject *items = PySequence_Fast(sequence, what);
    if (!items) return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    if (count > MAX_TOKENS) {
        Py_DECREF(items);
        PyErr_Format(PyExc_ValueError, "at most %d %s", MAX_TOKENS, what);
        return -1;
    }
    tokens->count = (int)count;
    tokens->longest = -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        char *text;
        if (PyBytes_AsStringAndSize(PySequence_Fast_GET_ITEM(items, i), &text, &tokens->length[i]) < 0) {
            Py_DECREF(items);
            return -1;
        }
        tokens->text[i] = text; /* kept alive by the caller's tuple */
        if (tokens->length[i] > tokens->longest) tokens->longest = tokens->length[i];
    }
    Py_DECREF(items);
    return 0;
}

static void release_columns(Column *columns, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        PyBuffer_Release(&columns[i].values);
        PyBuffer_Release(&columns[i].validity);
        if (columns[i].kind == 's') PyBuffer_Release(&columns[i].data);
    }
}

static PyObject *get_column(PyObject *spec, Column *column, Py_ssize_t capacity) {
    int expected = column->kind == 's' ? 3 : 2;
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != expected) {
        PyErr_Format(PyExc_TypeError, "a column of kind %c takes a tuple of %d buffers", column->kind, expected);
        return NULL;
    }
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(spec, 0), &column->values, PyBUF_WRITABLE) < 0) return NULL;
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(spec, 1), &column->validity, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&column->values);
        return NULL;
    }
    if (column->kind == 's' && PyObject_GetBuffer(PyTuple_GET_ITEM(spec, 2), &column->data, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&column->values);
        PyBuffer_Release(&column->validity);
        return NULL;
    }
    Py_ssize_t bitmap = (capacity + 7) / 8;
    Py_ssize_t needed = column->kind == 'f'   ? capacity * 8
                        : column->kind == 'b' ? bitmap
                        : column->kind == 'd' ? capacity * 4
                                              : (capacity + 1) * 4;
    if (column->values.len < needed || column->validity.len < bitmap) {
        PyErr_SetString(PyExc_ValueError, "a column's buffers are smaller than the capacity");
        PyBuffer_Release(&column->values);
        PyBuffer_Release(&column->validity);
        if (column->kind == 's') PyBuffer_Release(&column->data);
        return NULL;
    }
    if (column->kind == 's') ((int32_t *)column->values.buf)[0] = 0;
    return Py_None;
}

static PyObject *csv_parse(PyObject *self, PyObject *args) {
    Py_buffer data;
    const char *kinds;
    Py_ssize_t ncols, capacity;
    int delimiter, skip_rows;
    PyObject *nulls, *trues, *falses, *outputs;
    if (!PyArg_ParseTuple(args, "y*y#CiOOOOn", &data, &kinds, &ncols, &delimiter, &skip_rows, &nulls, &trues,
                          &falses, &outputs, &capacity))
        return NULL;
    Parse job = {.ncols = ncols, .capacity = capacity, .skip_rows = skip_rows, .error_row = -1, .error_column = -1};
    PyObject *result = NULL;
    if (read_tokens(nulls, &job.nulls, "null tokens") < 0 || read_tokens(trues, &job.trues, "true tokens") < 0 ||
        read_tokens(falses, &job.falses, "false tokens") < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    job.plain_numbers = 1;
    for (int i = 0; i < job.nulls.count; i++) {
        double ignored;
        const char *text = job.nulls.text[i], *end = text + job.nulls.length[i];
        if (plain_number(text, end, &ignored) == end) job.plain_numbers = 0;
    }
    if (!PyList_Check(outputs) || PyList_GET_SIZE(outputs) != ncols || ncols < 1 || capacity < 0) {
        PyErr_SetString(PyExc_ValueError, "outputs must be a list with one tuple of buffers per column");
        PyBuffer_Release(&data);
        return NULL;
    }
    job.columns = calloc((size_t)ncols, sizeof(Column));
    if (!job.columns) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    Py_ssize_t ready = 0;
    for (; ready < ncols; ready++) {
        char kind = kinds[ready];
        if (kind != 'f' && kind != 'b' && kind != 'd' && kind != 's') {
            PyErr_Format(PyExc_ValueError, "unknown column kind %c", kind);
            break;
        }
        job.columns[ready].kind = kind;
        if (!get_column(PyList_GET_ITEM(outputs, ready), &job.columns[ready], capacity)) break;
    }
    if (ready == ncols) {
        Cursor cursor = {.p = data.buf, .end = (const char *)data.buf + data.len, .delimiter = (char)delimiter,
                         .delimiters = ONES * (uint8_t)delimiter};
        int status;
        Py_BEGIN_ALLOW_THREADS status = parse_rows(&job, &cursor);
        Py_END_ALLOW_THREADS
        PyObject *null_counts = PyList_New(ncols), *lengths = PyList_New(ncols);
        if (null_counts && lengths) {
            for (Py_ssize_t i = 0; i < ncols; i++) {
                PyList_SET_ITEM(null_counts, i, PyLong_FromSsize_t(job.columns[i].nulls));
                PyList_SET_ITEM(lengths, i, PyLong_FromSsize_t(job.columns[i].used));
            }
            result = Py_BuildValue("innnOO", status, status == OK ? job.rows : 0, job.error_row, job.error_column,
                                   null_counts, lengths);
        }
        Py_XDECREF(null_counts);
        Py_XDECREF(lengths);
    }
    release_columns(job.columns, ready);
    free(job.columns);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *csv_count_lines(PyObject *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    Py_ssize_t lines = 0;
    Py_BEGIN_ALLOW_THREADS const char *p = data.buf, *end = p + data.len;
    while ((p = memchr(p, '\n', (size_t)(end - p)))) {
        lines++;
        p++;
    }
    Py_END_ALLOW_THREADS PyBuffer_Release(&data);
    return PyLong_FromSsize_t(lines);
}

/* ------------------------------------------------------------------------------ statistics */

static inline uint64_t mix64(uint64_t x) { /* splitmix64's finaliser: a bijection on 64 bits */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

#define MISSING_HASH 0x9E3779B97F4A7C15ULL


typedef struct {
    Py_buffer values, validity, out;
    Py_ssize_t offset, length;
    int has_validity;
} FloatInput;

static void release_input(FloatInput *in) {
    PyBuffer_Release(&in->values);
    PyBuffer_Release(&in->out);
    if (in->has_validity) PyBuffer_Release(&in->validity);
}

static inline int present(const FloatInput *in, const double *values, Py_ssize_t i) {
    if (in->has_validity) {
        Py_ssize_t j = in->offset + i;
        if (!(((const uint8_t *)in->validity.buf)[j >> 3] >> (j & 7) & 1)) return 0;
    }
    return !isnan(values[i]);
}

/* A histogram to count into: np.histogram(values, bins=len(edges) - 1, range=(edges[0], edges[-1]))'s bins. */
typedef struct {
    int64_t *counts;
    const double *edges;
    Py_ssize_t bins;
    double first, last, scale;
} Histogram;

/* Checks the edges and counts buffers (counts one per bin, edges spanning a finite range). */
static int histogram_setup(Histogram *h, Py_buffer *counts, Py_buffer *edges) {
    h->bins = edges->len / 8 - 1;
    h->edges = edges->buf;
    h->counts = counts->buf;
    if (h->bins < 1 || counts->len < h->bins * 8 || !(h->edges[h->bins] > h->edges[0]) ||
        !isfinite(h->edges[h->bins] - h->edges[0])) {
        h->bins = 0;
        PyErr_SetString(PyExc_ValueError, "the edges must span a finite range, low to high, and counts hold one per bin");
        return -1;
    }
    h->first = h->edges[0];
    h->last = h->edges[h->bins];
    h->scale = (double)h->bins / (h->last - h->first);
    return 0;
}

/* NumPy's bin for v: a first guess, moved by one where v is left of its bin or, but in the last bin,
 * at or right of its next edge. That is the one bin whose edges hold v, whatever the guess within
 * one bin, so a multiplication by bins / width instead of NumPy's division gives the same counts. */
static inline void count_into(Histogram *h, double v) {
    if (!(v >= h->first && v <= h->last)) return; /* NaN fails both */
    Py_ssize_t index = (Py_ssize_t)((v - h->first) * h->scale);
    if (index >= h->bins) index = h->bins - 1;
    if (v < h->edges[index]) index--;
    else if (v >= h->edges[index + 1] && index != h->bins - 1) index++;
    h->counts[index]++;
}

/* While the caller counts distinct values exactly (limit is the largest hash), a block of a column
 * with few values hands back each hash once, not once a row: the hashes go through a small
 * open-addressing set first. Once it holds DEDUPE_MAX hashes (a column of many values) it is left
 * alone and every later hash is written; the caller's sorted merge removes what repeats. */
#define DEDUPE_SLOTS 8192
#define DEDUPE_MAX (DEDUPE_SLOTS / 2)

typedef struct {
    uint64_t *slots; /* 0 is an empty slot: the hash 0 is kept in `zero` */
    Py_ssize_t used;
    int zero, on;
} Dedupe;

static void dedupe_start(Dedupe *d, unsigned long long limit) {
    d->used = d->zero = 0;
    d->slots = limit == UINT64_MAX ? calloc(DEDUPE_SLOTS, sizeof(uint64_t)) : NULL; /* none: all written */
    d->on = d->slots != NULL;
}

/* Whether h is to be written: new to the set, or the set is off. */
static inline int dedupe_new(Dedupe *d, uint64_t h) {
    if (!d->on) return 1;
    if (!h) {
        if (d->zero) return 0;
        return d->zero = 1;
    }
    size_t i = (size_t)h & (DEDUPE_SLOTS - 1); /* the hashes are mixed: their low bits will do */
    while (d->slots[i]) {
        if (d->slots[i] == h) return 0;
        i = (i + 1) & (DEDUPE_SLOTS - 1);
    }
    d->slots[i] = h;
    if (++d->used == DEDUPE_MAX) d->on = 0;
    return 1;
}

/* The arguments of float_stats and int_stats: values, validity (or None), offset, length,
 * row_hashes (into in.out), present (a writable buffer of as many hashes), limit and weight, and
 * for float_stats an optional histogram's counts and edges. */
static int stats_input(PyObject *args, FloatInput *in, Py_buffer *present, unsigned long long *limit,
                       unsigned long long *weight, PyObject **counts, PyObject **edges) {
    PyObject *validity, *present_object;
    memset(in, 0, sizeof(*in));
    if (!PyArg_ParseTuple(args, "y*Onnw*OKK|OO", &in->values, &validity, &in->offset, &in->length, &in->out,
                          &present_object, limit, weight, counts, edges))
        return -1;
    if (validity != Py_None) {
        if (PyObject_GetBuffer(validity, &in->validity, PyBUF_SIMPLE) < 0) goto fail;
        in->has_validity = 1;
        if (in->validity.len * 8 < in->offset + in->length) goto too_small;
    }
    if (in->offset < 0 || in->length < 0 || in->values.len < (in->offset + in->length) * 8) goto too_small;
    if (PyObject_GetBuffer(present_object, present, PyBUF_WRITABLE) < 0) goto fail;
    if (in->out.len < in->length * 8 || present->len < in->length * 8) {
        PyBuffer_Release(present);
        PyErr_SetString(PyExc_ValueError, "row_hashes and present take length values");
        goto fail;
    }
    return 0;
too_small:
    PyErr_SetString(PyExc_ValueError, "a buffer is smaller than offset + length");
fail:
    release_input(in);
    return -1;
}

/* Missing values (null or NaN), range with and without infinities, mean and the sum of squared
 * deviations of the finite values (in one pass, from sums shifted by the first). Each value's hash
 * (uint64: equal hashes exactly for equal values; -0.0 is 0.0; a missing value's is MISSING_HASH)
 * is added into its row's times the column's odd `weight` (a sum: columns may be added in any
 * order, on any thread, and summed after); the present values' hashes up to `limit`
 * are written, in order, into `present` (with the largest limit, an exact count, a hash that came
 * before in the block is mostly left out: see Dedupe), and their number is returned last. Given counts and
 * edges too, the finite values are counted into that histogram on the way (see count_into). */
static PyObject *csv_float_stats(PyObject *self, PyObject *args) {
    FloatInput in;
    Py_buffer present_buffer;
    unsigned long long limit, weight;
    PyObject *counts_object = NULL, *edges_object = NULL;
    if (stats_input(args, &in, &present_buffer, &limit, &weight, &counts_object, &edges_object) < 0) return NULL;
    Histogram histogram = {0};
    Py_buffer counts_buffer = {0}, edges_buffer = {0};
    int binning = counts_object && counts_object != Py_None;
    if (binning && (!edges_object || PyObject_GetBuffer(counts_object, &counts_buffer, PyBUF_WRITABLE) < 0 ||
                    PyObject_GetBuffer(edges_object, &edges_buffer, PyBUF_SIMPLE) < 0 ||
                    histogram_setup(&histogram, &counts_buffer, &edges_buffer) < 0)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "counts go with edges");
        if (counts_buffer.obj) PyBuffer_Release(&counts_buffer);
        if (edges_buffer.obj) PyBuffer_Release(&edges_buffer);
        PyBuffer_Release(&present_buffer);
        release_input(&in);
        return NULL;
    }
    const double *values = (const double *)in.values.buf + in.offset;
    uint64_t *rows = in.out.buf, *present_hashes = present_buffer.buf;
    Py_ssize_t missing = 0, finite = 0, kept = 0;
    double low = INFINITY, high = -INFINITY, flow = INFINITY, fhigh = -INFINITY, mean = 0.0, m2 = 0.0;
    double shift = 0.0, s1 = 0.0, s2 = 0.0; /* sums of the deviations from the first finite value */
    Dedupe seen;
    Py_BEGIN_ALLOW_THREADS dedupe_start(&seen, limit);
    for (Py_ssize_t i = 0; i < in.length; i++) {
        double v = values[i];
        if (!present(&in, values, i)) {
            missing++;
            rows[i] += MISSING_HASH * weight;
            continue;
        }
        double key = v == 0.0 ? 0.0 : v;
        uint64_t bits;
        memcpy(&bits, &key, 8);
        uint64_t h = mix64(bits);
        rows[i] += h * weight;
        if (h <= limit && dedupe_new(&seen, h)) present_hashes[kept++] = h;
        if (v < low) low = v;
        if (v > high) high = v;
        if (v - v == 0.0) { /* finite */
            if (!finite) shift = v;
            finite++;
            double d = v - shift;
            s1 += d;
            s2 += d * d;
            if (v < flow) flow = v;
            if (v > fhigh) fhigh = v;
            if (histogram.bins) count_into(&histogram, v);
        }
    }
    if (finite) {
        /* One pass, shifted by a value of the data: the cancellation the naive sums suffer comes
         * from the mean's distance to the shift, about one standard deviation here */
        mean = shift + s1 / (double)finite;
        m2 = s2 - s1 * s1 / (double)finite;
        if (m2 < 0.0) m2 = 0.0;
    }
    free(seen.slots);
    Py_END_ALLOW_THREADS PyBuffer_Release(&present_buffer);
    if (binning) {
        PyBuffer_Release(&counts_buffer);
        PyBuffer_Release(&edges_buffer);
    }
    release_input(&in);
    return Py_BuildValue("nnddddddn", missing, finite, low, high, flow, fhigh, mean, m2, kept);
}

/* float_stats for int64 values (timestamps): missing are the nulls; the range; each value's hash
 * (a bijection of its bits) added into its row's times `weight`, and those up to `limit` written
 * into `present` (as float_stats: repeats left out under the largest limit). Returns (missing, low, high, n_present_up_to_limit); low > high when none. */
static PyObject *csv_int_stats(PyObject *self, PyObject *args) {
    FloatInput in;
    Py_buffer present_buffer;
    unsigned long long limit, weight;
    PyObject *no_counts = NULL, *no_edges = NULL;
    if (stats_input(args, &in, &present_buffer, &limit, &weight, &no_counts, &no_edges) < 0) return NULL;
    const int64_t *values = (const int64_t *)in.values.buf + in.offset;
    const uint8_t *validity = in.has_validity ? in.validity.buf : NULL;
    uint64_t *rows = in.out.buf, *present_hashes = present_buffer.buf;
    Py_ssize_t missing = 0, kept = 0;
    int64_t low = INT64_MAX, high = INT64_MIN;
    Dedupe seen;
    Py_BEGIN_ALLOW_THREADS dedupe_start(&seen, limit);
    for (Py_ssize_t i = 0; i < in.length; i++) {
        if (validity && !(validity[(in.offset + i) >> 3] >> ((in.offset + i) & 7) & 1)) {
            missing++;
            rows[i] += MISSING_HASH * weight;
            continue;
        }
        int64_t v = values[i];
        uint64_t h = mix64((uint64_t)v);
        rows[i] += h * weight;
        if (h <= limit && dedupe_new(&seen, h)) present_hashes[kept++] = h;
        if (v < low) low = v;
        if (v > high) high = v;
    }
    free(seen.slots);
    Py_END_ALLOW_THREADS PyBuffer_Release(&present_buffer);
    release_input(&in);
    return Py_BuildValue("nLLn", missing, (long long)low, (long long)high, kept);
}

/* The smallest and largest finite present values (inf and -inf where there are none). */
static PyObject *csv_float_range(PyObject *self, PyObject *args) {
    Py_buffer values_buffer, validity_buffer = {0};
    PyObject *validity_object;
    Py_ssize_t offset, length;
    if (!PyArg_ParseTuple(args, "y*Onn", &values_buffer, &validity_object, &offset, &length)) return NULL;
    int has_validity = validity_object != Py_None;
    if (has_validity && PyObject_GetBuffer(validity_object, &validity_buffer, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&values_buffer);
        return NULL;
    }
    if (offset < 0 || length < 0 || values_buffer.len < (offset + length) * 8 ||
        (has_validity && validity_buffer.len * 8 < offset + length)) {
        PyBuffer_Release(&values_buffer);
        if (has_validity) PyBuffer_Release(&validity_buffer);
        PyErr_SetString(PyExc_ValueError, "a buffer is smaller than offset + length");
        return NULL;
    }
    const double *values = (const double *)values_buffer.buf + offset;
    const uint8_t *validity = has_validity ? validity_buffer.buf : NULL;
    double low = INFINITY, high = -INFINITY;
    Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < length; i++) {
        double v = values[i];
        if (validity && !(validity[(offset + i) >> 3] >> ((offset + i) & 7) & 1)) continue;
        if (v - v != 0.0) continue; /* NaN or infinite */
        if (v < low) low = v;
        if (v > high) high = v;
    }
    Py_END_ALLOW_THREADS PyBuffer_Release(&values_buffer);
    if (has_validity) PyBuffer_Release(&validity_buffer);
    return Py_BuildValue("dd", low, high);
}

/* String j's bytes [*a, *b) by its offsets; an empty string where they are broken, so that nothing
 * outside the data (of `size` bytes) is read. */
static inline void string_span(const int32_t *offsets, Py_ssize_t j, Py_ssize_t size, int32_t *a, int32_t *b) {
    *a = offsets[j];
    *b = offsets[j + 1];
    if (*a < 0 || *b < *a || *b > size) *a = *b = 0;
}

/* The hash of the n bytes at p (in a buffer that ends at end): eight at a time through splitmix64's
 * mixer, the length folded in last. The last part word is one 8-byte load, masked, where the buffer
 * goes on that far (a call to memcpy of a few bytes cost more than the rest of a short string). */
static inline uint64_t string_hash(const unsigned char *p, Py_ssize_t n, const unsigned char *end) {
    uint64_t h = 0x243F6A8885A308D3ULL;
    Py_ssize_t a = 0;
    for (; n - a >= 8; a += 8) {
        uint64_t word;
        memcpy(&word, p + a, 8);
        h = mix64(h ^ word);
    }
    uint64_t tail = 0;
    const Py_ssize_t rest = n - a;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (rest && end - (p + a) >= 8) {
        memcpy(&tail, p + a, 8);
        tail &= ~0ULL >> (8 * (8 - rest));
    } else
#endif
        memcpy(&tail, p + a, (size_t)rest);
    return mix64(h ^ tail ^ ((uint64_t)n << 56));
}

/* Whether the n bytes at x and at y are equal (both in a buffer that ends at end): one masked 8-byte
 * compare for a short string where the buffer allows, memcmp otherwise. */
static inline int same_bytes(const unsigned char *x, const unsigned char *y, Py_ssize_t n, const unsigned char *end) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n <= 8 && end - x >= 8 && end - y >= 8) {
        uint64_t u, v;
        memcpy(&u, x, 8);
        memcpy(&v, y, 8);
        return n == 0 || !((u ^ v) & (~0ULL >> (8 * (8 - n))));
    }
#endif
    return !memcmp(x, y, (size_t)n);
}

/* A 64-bit hash of each string of an Arrow string array (int32 offsets, UTF-8 bytes) into out:
 * eight bytes at a time through splitmix64's mixer, the length folded in last. Not for adversaries:
 * row hashes and distinct counts of one ingestion compare them with each other only. */
static PyObject *csv_string_hashes(PyObject *self, PyObject *args) {
    Py_buffer offsets_buffer, data_buffer, out_buffer;
    Py_ssize_t offset, length;
    if (!PyArg_ParseTuple(args, "y*y*nnw*", &offsets_buffer, &data_buffer, &offset, &length, &out_buffer))
        return NULL;
    const int32_t *offsets = offsets_buffer.buf;
    if (offset < 0 || length < 0 || offsets_buffer.len < (offset + length + 1) * 4 || out_buffer.len < length * 8) {
        PyBuffer_Release(&offsets_buffer);
        PyBuffer_Release(&data_buffer);
        PyBuffer_Release(&out_buffer);
        PyErr_SetString(PyExc_ValueError, "offsets, data and out do not hold offset + length strings");
        return NULL;
    }
    const unsigned char *data = data_buffer.buf;
    uint64_t *out = out_buffer.buf;
    Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < length; i++) {
        int32_t a, b;
        string_span(offsets, offset + i, data_buffer.len, &a, &b);
        out[i] = string_hash(data + a, b - a, data + data_buffer.len);
    }
    Py_END_ALLOW_THREADS PyBuffer_Release(&offsets_buffer);
    PyBuffer_Release(&data_buffer);
    PyBuffer_Release(&out_buffer);
    Py_RETURN_NONE;
}

typedef struct {
    uint64_t hash;
    int64_t code; /* the value's code + 1; 0: an empty slot */
} Slot;

/* The table twice as large, its entries placed again; NULL (and the old table freed) without memory. */
static Slot *grow(Slot *table, Py_ssize_t *slots) {
    const Py_ssize_t bigger = *slots * 2;
    Slot *grown = calloc((size_t)bigger, sizeof(Slot));
    if (grown) {
        for (Py_ssize_t k = 0; k < *slots; k++) {
            if (!table[k].code) continue;
            size_t at = (size_t)table[k].hash & (size_t)(bigger - 1);
            while (grown[at].code) at = (at + 1) & (size_t)(bigger - 1);
            grown[at] = table[k];
        }
        *slots = bigger;
    }
    free(table);
    return grown;
}

/* A dictionary encoding of an Arrow string array (int32 offsets, UTF-8 bytes, optional validity),
 * in first-seen order as pyarrow's dictionary_encode: each row's code (-1 for a null) and hash
 * (string_hashes', MISSING_HASH for a null) into codes and hashes, and each value's first row into
 * firsts. Returns the number of distinct values, or -1 once there are more than firsts holds (the
 * caller then encodes with Arrow). Equal hashes are told apart by their bytes. */
static PyObject *csv_string_codes(PyObject *self, PyObject *args) {
    Py_buffer offsets_buffer, data_buffer, codes_buffer, hashes_buffer, firsts_buffer, validity_buffer = {0};
    PyObject *validity_object;
    Py_ssize_t offset, length;
    if (!PyArg_ParseTuple(args, "y*y*Onnw*w*w*", &offsets_buffer, &data_buffer, &validity_object, &offset, &length,
                          &codes_buffer, &hashes_buffer, &firsts_buffer))
        return NULL;
    int has_validity = validity_object != Py_None;
    if (has_validity && PyObject_GetBuffer(validity_object, &validity_buffer, PyBUF_SIMPLE) < 0) {
        has_validity = -1;
    }
    const Py_ssize_t capacity = firsts_buffer.len / 8;
    Py_ssize_t slots = 256; /* doubled whenever half full: few values, a small table */
    Slot *table = has_validity >= 0 ? calloc((size_t)slots, sizeof(Slot)) : NULL;
    Py_ssize_t distinct = 0;
    const char *problem = NULL;
    if (has_validity < 0) problem = "";
    else if (!table) problem = "memory";
    else if (offset < 0 || length < 0 || offsets_buffer.len < (offset + length + 1) * 4 || codes_buffer.len < length * 4 ||
             hashes_buffer.len < length * 8 || (has_validity && validity_buffer.len * 8 < offset + length))
        problem = "offsets, validity, codes and hashes do not hold offset + length strings";
    if (!problem) {
        const int32_t *offsets = offsets_buffer.buf;
        const unsigned char *data = data_buffer.buf, *valid = has_validity ? validity_buffer.buf : NULL;
        int32_t *codes = codes_buffer.buf;
        uint64_t *hashes = hashes_buffer.buf;
        int64_t *firsts = firsts_buffer.buf;
        Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < length; i++) {
            const Py_ssize_t j = offset + i;
            if (valid && !(valid[j >> 3] >> (j & 7) & 1)) {
                codes[i] = -1;
                hashes[i] = MISSING_HASH;
                continue;
            }
            int32_t a, b;
            string_span(offsets, j, data_buffer.len, &a, &b);
            const uint64_t h = string_hash(data + a, b - a, data + data_buffer.len);
            hashes[i] = h;
            for (size_t k = (size_t)h & (size_t)(slots - 1);; k = (k + 1) & (size_t)(slots - 1)) {
                if (!table[k].code) { /* a new value */
                    if (distinct == capacity) {
                        distinct = -1;
                        break;
                    }
                    table[k].hash = h;
                    table[k].code = distinct + 1;
                    firsts[distinct] = i;
                    codes[i] = (int32_t)distinct++;
                    if (2 * distinct >= slots && !(table = grow(table, &slots))) distinct = -2;
                    break;
                }
                if (table[k].hash != h) continue;
                const Py_ssize_t first = offset + firsts[table[k].code - 1];
                int32_t fa, fb;
                string_span(offsets, first, data_buffer.len, &fa, &fb);
                if (fb - fa == b - a && same_bytes(data + fa, data + a, b - a, data + data_buffer.len)) {
                    codes[i] = (int32_t)(table[k].code - 1);
                    break;
                }
            }
            if (distinct < 0) break;
        }
        Py_END_ALLOW_THREADS if (distinct == -2) problem = "memory";
    }
    free(table);
    PyBuffer_Release(&offsets_buffer);
    PyBuffer_Release(&data_buffer);
    PyBuffer_Release(&codes_buffer);
    PyBuffer_Release(&hashes_buffer);
    PyBuffer_Release(&firsts_buffer);
    if (has_validity > 0) PyBuffer_Release(&validity_buffer);
    if (problem) {
        if (!*problem) return NULL; /* the validity's error is set */
        if (!strcmp(problem, "memory")) return PyErr_NoMemory();
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    return PyLong_FromSsize_t(distinct);
}

static PyMethodDef methods[] = {
    {"string_hashes", csv_string_hashes, METH_VARARGS, "64-bit hashes of an Arrow string array's values."},
    {"string_codes", csv_string_codes, METH_VARARGS, "A dictionary encoding of an Arrow string array."},
    {"parse", csv_parse, METH_VARARGS, "Parse whole CSV rows into Arrow buffers; see the module's source."},
    {"count_lines", csv_count_lines, METH_VARARGS, "The number of newline bytes in a buffer."},
    {"float_stats", csv_float_stats, METH_VARARGS, "Missing, range, mean, M2 and hashes of float64 values."},
    {"int_stats", csv_int_stats, METH_VARARGS, "Missing, range and hashes of int64 values."},
    {"float_range", csv_float_range, METH_VARARGS, "The finite range of float64 values."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_csvscan", "Cupola's compiled CSV reader.", -1, methods};

PyMODINIT_FUNC PyInit__csvscan(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    const char *names[] = {"OK", "BAD_VALUE", "BAD_ROW", "QUOTED_NEWLINE", "LONE_CR", "FULL"};
    for (int i = 0; i < 6; i++)
        if (PyModule_AddIntConstant(m, names[i], i) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    return m;
}
