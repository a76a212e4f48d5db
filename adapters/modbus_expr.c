/* The expression language of derived points: numbers, point and param names,
 * + - * / and parentheses. It is compiled once at load time into a postfix
 * program of at most MB_MAX_EXPR operations, so evaluation needs no parsing,
 * no allocation and a stack whose size is known in advance. */
#include "adapters/modbus_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cursor {
    const gw_profile *p;
    size_t self;
    const char *s;
    size_t pos;
    mb_op ops[MB_MAX_EXPR];
    size_t n;
    int depth;
    char *msg;
    size_t msglen;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->s[c->pos] == ' ' || c->s[c->pos] == '\t')
        c->pos++;
}

static int emit(cursor *c, uint8_t op, uint16_t idx, double num)
{
    if (c->n >= MB_MAX_EXPR) {
        snprintf(c->msg, c->msglen, "expression longer than %d terms", MB_MAX_EXPR);
        return GW_EINVAL;
    }
    c->ops[c->n].op = op;
    c->ops[c->n].idx = idx;
    c->ops[c->n].num = num;
    c->n++;
    return GW_OK;
}

static int parse_sum(cursor *c);

static int parse_number(cursor *c)
{
    const char *s = c->s;
    size_t i = c->pos;
    char buf[64];
    while (isdigit((unsigned char)s[i]))
        i++;
    if (s[i] == '.') {
        i++;
        while (isdigit((unsigned char)s[i]))
            i++;
    }
    if ((s[i] == 'e' || s[i] == 'E') &&
        (isdigit((unsigned char)s[i + 1]) ||
         ((s[i + 1] == '+' || s[i + 1] == '-') && isdigit((unsigned char)s[i + 2])))) {
        i += 2;
        while (isdigit((unsigned char)s[i]))
            i++;
    }
    size_t len = i - c->pos;
    if (len == 0 || len >= sizeof(buf) || (len == 1 && s[c->pos] == '.')) {
        snprintf(c->msg, c->msglen, "bad number at column %zu", c->pos + 1);
        return GW_EINVAL;
    }
    memcpy(buf, s + c->pos, len);
    buf[len] = '\0';
    double v = strtod(buf, NULL);
    if (!isfinite(v)) {
        snprintf(c->msg, c->msglen, "number '%s' out of range", buf);
        return GW_EINVAL;
    }
    c->pos = i;
    return emit(c, MB_OP_NUM, 0, v);
}

static int parse_name(cursor *c)
{
    const char *s = c->s;
    size_t i = c->pos;
    char name[GW_KEY_MAX];
    while (isalnum((unsigned char)s[i]) || s[i] == '_')
        i++;
    size_t len = i - c->pos;
    if (len >= sizeof(name)) {
        snprintf(c->msg, c->msglen, "name at column %zu is too long", c->pos + 1);
        return GW_EINVAL;
    }
    memcpy(name, s + c->pos, len);
    name[len] = '\0';
    c->pos = i;
    const gw_profile *p = c->p;
    for (size_t k = 0; k < p->npoints; k++) {
        const mb_point *pt = &p->points[k];
        if (strcmp(pt->name, name) != 0)
            continue;
        if (k == c->self) {
            snprintf(c->msg, c->msglen, "point '%s' refers to itself", name);
            return GW_EINVAL;
        }
        if (pt->kind == MB_DERIVED && k > c->self) {
            snprintf(c->msg, c->msglen, "derived point '%s' must be defined before this one", name);
            return GW_EINVAL;
        }
        if (pt->type == MB_T_STRING) {
            snprintf(c->msg, c->msglen, "string point '%s' cannot be used in an expression", name);
            return GW_EINVAL;
        }
        return emit(c, MB_OP_POINT, (uint16_t)k, 0);
    }
    for (size_t k = 0; k < p->nparams; k++)
        if (strcmp(p->params[k].name, name) == 0)
            return emit(c, MB_OP_PARAM, (uint16_t)k, 0);
    snprintf(c->msg, c->msglen, "unknown point or param '%s'", name);
    return GW_EINVAL;
}

static int parse_unary(cursor *c)
{
    int rc;
    skip_ws(c);
    char ch = c->s[c->pos];
    if (++c->depth > MB_MAX_DEPTH) {
        snprintf(c->msg, c->msglen, "expression nested deeper than %d", MB_MAX_DEPTH);
        return GW_EINVAL;
    }
    if (ch == '-' || ch == '+') {
        c->pos++;
        rc = parse_unary(c);
        if (rc == GW_OK && ch == '-')
            rc = emit(c, MB_OP_NEG, 0, 0);
    } else if (ch == '(') {
        c->pos++;
        rc = parse_sum(c);
        if (rc == GW_OK) {
            skip_ws(c);
            if (c->s[c->pos] != ')') {
                snprintf(c->msg, c->msglen, "missing ')' at column %zu", c->pos + 1);
                rc = GW_EINVAL;
            } else {
                c->pos++;
            }
        }
    } else if (isdigit((unsigned char)ch) || ch == '.') {
        rc = parse_number(c);
    } else if (isalpha((unsigned char)ch) || ch == '_') {
        rc = parse_name(c);
    } else {
        if (ch)
            snprintf(c->msg, c->msglen, "unexpected '%c' at column %zu", ch, c->pos + 1);
        else
            snprintf(c->msg, c->msglen, "expression ends early");
        rc = GW_EINVAL;
    }
    c->depth--;
    return rc;
}

static int parse_product(cursor *c)
{
    int rc = parse_unary(c);
    while (rc == GW_OK) {
        skip_ws(c);
        char ch = c->s[c->pos];
        if (ch != '*' && ch != '/')
            break;
        c->pos++;
        rc = parse_unary(c);
        if (rc == GW_OK)
            rc = emit(c, ch == '*' ? MB_OP_MUL : MB_OP_DIV, 0, 0);
    }
    return rc;
}

static int parse_sum(cursor *c)
{
    int rc = parse_product(c);
    while (rc == GW_OK) {
        skip_ws(c);
        char ch = c->s[c->pos];
        if (ch != '+' && ch != '-')
            break;
        c->pos++;
        rc = parse_product(c);
        if (rc == GW_OK)
            rc = emit(c, ch == '+' ? MB_OP_ADD : MB_OP_SUB, 0, 0);
    }
    return rc;
}

int mb_expr_compile(const gw_profile *p, size_t self, const char *text, mb_op **ops, size_t *nops,
                    char *msg, size_t msglen)
{
    cursor c;
    memset(&c, 0, sizeof(c));
    c.p = p;
    c.self = self;
    c.s = text;
    c.msg = msg;
    c.msglen = msglen;
    *ops = NULL;
    *nops = 0;
    if (strlen(text) > MB_MAX_EXPR_LEN) {
        snprintf(msg, msglen, "expression longer than %d characters", MB_MAX_EXPR_LEN);
        return GW_EINVAL;
    }
    int rc = parse_sum(&c);
    if (rc)
        return rc;
    skip_ws(&c);
    if (c.s[c.pos] != '\0') {
        snprintf(msg, msglen, "unexpected '%c' at column %zu", c.s[c.pos], c.pos + 1);
        return GW_EINVAL;
    }
    *ops = malloc(c.n * sizeof(mb_op));
    if (!*ops)
        return GW_ENOMEM;
    memcpy(*ops, c.ops, c.n * sizeof(mb_op));
    *nops = c.n;
    return GW_OK;
}

/* The compiler only emits well-formed postfix programs, but the evaluator still
 * checks its stack so a corrupted program cannot write out of bounds. */
mb_val mb_expr_eval(const mb_op *ops, size_t nops, const mb_val *points, const mb_val *params)
{
    mb_val st[MB_MAX_EXPR];
    size_t sp = 0;
    mb_val bad = {0, GW_Q_BAD, GW_R_OUT_OF_RANGE};

    for (size_t i = 0; i < nops; i++) {
        const mb_op *o = &ops[i];
        if (o->op <= MB_OP_PARAM) {
            if (sp >= MB_MAX_EXPR)
                return bad;
            if (o->op == MB_OP_NUM)
                st[sp] = (mb_val){o->num, GW_Q_GOOD, GW_R_NONE};
            else
                st[sp] = o->op == MB_OP_POINT ? points[o->idx] : params[o->idx];
            sp++;
            continue;
        }
        if (o->op == MB_OP_NEG) {
            if (sp < 1)
                return bad;
            st[sp - 1].v = -st[sp - 1].v;
            continue;
        }
        if (sp < 2)
            return bad;
        mb_val a = st[sp - 2], b = st[sp - 1];
        mb_val r = {0, GW_Q_GOOD, GW_R_NONE};
        if (a.q != GW_Q_GOOD)
            r = a;
        else if (b.q != GW_Q_GOOD)
            r = b;
        else if (o->op == MB_OP_ADD)
            r.v = a.v + b.v;
        else if (o->op == MB_OP_SUB)
            r.v = a.v - b.v;
        else if (o->op == MB_OP_MUL)
            r.v = a.v * b.v;
        else if (b.v == 0.0)
            r = bad;
        else
            r.v = a.v / b.v;
        st[sp - 2] = r;
        sp--;
    }
    if (sp != 1)
        return bad;
    if (st[0].q == GW_Q_GOOD && !isfinite(st[0].v))
        return bad;
    if (st[0].q != GW_Q_GOOD)
        st[0].v = 0;
    return st[0];
}
