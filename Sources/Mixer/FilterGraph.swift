import CFFmpeg
import FFmpegSupport

typealias FilterContext = UnsafeMutablePointer<AVFilterContext>

/// A libavfilter graph built filter by filter, so every filter keeps the exact name we give it
/// and we hold its context for runtime commands (no name lookups in the hot path).
final class FilterGraph {
    let graph: UnsafeMutablePointer<AVFilterGraph>

    init() throws {
        guard let g = avfilter_graph_alloc() else { throw FFmpegError(cff_averror(ENOMEM), "avfilter_graph_alloc") }
        graph = g
        // The mix is a few microseconds per block: threads would cost more than they save.
        g.pointee.nb_threads = 1
    }

    deinit {
        var g: UnsafeMutablePointer<AVFilterGraph>? = graph
        avfilter_graph_free(&g)
    }

    func add(_ filter: String, name: String, _ args: String?) throws -> FilterContext {
        guard let f = avfilter_get_by_name(filter) else {
            throw FFmpegError(cff_averror(ENOENT), "filter \(filter) is not in this FFmpeg build")
        }
        var ctx: FilterContext?
        try ffCheck(avfilter_graph_create_filter(&ctx, f, name, args, nil, graph), "create \(name) (\(filter)=\(args ?? ""))")
        guard let ctx else { throw FFmpegError(cff_averror(ENOMEM), "create \(name)") }
        return ctx
    }

    func link(_ from: FilterContext, _ fromPad: Int = 0, to: FilterContext, _ toPad: Int = 0) throws {
        try ffCheck(avfilter_link(from, UInt32(fromPad), to, UInt32(toPad)), "link \(String(cString: from.pointee.name)) → \(String(cString: to.pointee.name))")
    }

    func configure() throws {
        try ffCheck(avfilter_graph_config(graph, nil), "configure the mix graph")
    }

    /// Sends a runtime command to one filter; FFmpeg applies it before the next frame it filters.
    func command(_ ctx: FilterContext, _ cmd: String, _ arg: String) throws {
        try ffCheck(avfilter_process_command(ctx, cmd, arg, nil, 0, 0),
                    "command \(cmd)=\(arg) to \(String(cString: ctx.pointee.name))")
    }
}
