#include "api/request.h"

#include <stdlib.h>
#include <string.h>

void pv_api_req_close(pv_api_req_t *r) {
    free(r->prompt);
    pv_gram_free(r->gram);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    memset(r, 0, sizeof *r);
}
