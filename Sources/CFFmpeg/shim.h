#ifndef SHELCASTER_CFFMPEG_SHIM_H
#define SHELCASTER_CFFMPEG_SHIM_H
#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
#include <libavutil/avutil.h>
#include <libavutil/opt.h>
#include <libavutil/channel_layout.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>

/* Macros Swift cannot import. */
static inline int cff_averror(int e) { return AVERROR(e); }
static inline int cff_eof(void) { return AVERROR_EOF; }
static inline int cff_eagain(void) { return AVERROR(EAGAIN); }
static inline int64_t cff_nopts(void) { return AV_NOPTS_VALUE; }
static inline AVRational cff_time_base_q(void) { return AV_TIME_BASE_Q; }
static inline int cff_error_string(int err, char *buf, size_t size) { return av_strerror(err, buf, size); }
static inline AVChannelLayout cff_layout_stereo(void) { AVChannelLayout l = AV_CHANNEL_LAYOUT_STEREO; return l; }
static inline AVChannelLayout cff_layout_mono(void) { AVChannelLayout l = AV_CHANNEL_LAYOUT_MONO; return l; }
/* av_log is variadic: route FFmpeg's own logging through a fixed level only. */
static inline void cff_set_log_level(int level) { av_log_set_level(level); }
#endif
