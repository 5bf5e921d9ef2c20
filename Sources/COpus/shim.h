#ifndef SHELCASTER_COPUS_SHIM_H
#define SHELCASTER_COPUS_SHIM_H
#include <opus/opus.h>
/* opus_decoder_ctl is variadic: fixed-signature wrappers for the requests we use. */
static inline int copus_get_last_packet_duration(OpusDecoder *d, opus_int32 *out) {
    return opus_decoder_ctl(d, OPUS_GET_LAST_PACKET_DURATION(out));
}
static inline int copus_reset(OpusDecoder *d) { return opus_decoder_ctl(d, OPUS_RESET_STATE); }
static inline int copus_set_gain(OpusDecoder *d, opus_int32 gain) { return opus_decoder_ctl(d, OPUS_SET_GAIN(gain)); }
/* opus_encoder_ctl wrappers (OpusCodec's OpusEncoder, used for tests and fixtures). */
static inline int copus_enc_set_bitrate(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_BITRATE(v)); }
static inline int copus_enc_set_inband_fec(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_INBAND_FEC(v)); }
static inline int copus_enc_set_packet_loss_perc(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_PACKET_LOSS_PERC(v)); }
static inline int copus_enc_set_dtx(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_DTX(v)); }
static inline int copus_enc_set_signal(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_SIGNAL(v)); }
static inline int copus_enc_set_complexity(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_COMPLEXITY(v)); }
static inline int copus_enc_set_vbr(OpusEncoder *e, opus_int32 v) { return opus_encoder_ctl(e, OPUS_SET_VBR(v)); }
static inline int copus_enc_get_lookahead(OpusEncoder *e, opus_int32 *out) { return opus_encoder_ctl(e, OPUS_GET_LOOKAHEAD(out)); }
static inline int copus_enc_reset(OpusEncoder *e) { return opus_encoder_ctl(e, OPUS_RESET_STATE); }
#endif
