#ifndef SHELCASTER_COPUS_SHIM_H
#define SHELCASTER_COPUS_SHIM_H
#include <opus/opus.h>
/* opus_decoder_ctl is variadic: fixed-signature wrappers for the requests we use. */
static inline int copus_get_last_packet_duration(OpusDecoder *d, opus_int32 *out) {
    return opus_decoder_ctl(d, OPUS_GET_LAST_PACKET_DURATION(out));
}
static inline int copus_reset(OpusDecoder *d) { return opus_decoder_ctl(d, OPUS_RESET_STATE); }
static inline int copus_set_gain(OpusDecoder *d, opus_int32 gain) { return opus_decoder_ctl(d, OPUS_SET_GAIN(gain)); }
#endif
