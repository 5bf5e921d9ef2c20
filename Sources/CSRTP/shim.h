#ifndef SHELCASTER_CSRTP_SHIM_H
#define SHELCASTER_CSRTP_SHIM_H
#include <srtp2/srtp.h>
#endif
