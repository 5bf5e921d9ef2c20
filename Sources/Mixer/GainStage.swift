/// Sample-accurate, click-free gain for one source, inside the graph.
///
/// FFmpeg 5.1's `volume` filter changes gain per frame (a step, i.e. a click), but `afade` ramps per
/// sample and takes `type`/`start_sample`/`nb_samples` as runtime commands. So each source is split
/// into two paths, `volume → afade`, summed by the mix: one path is live (faded in), the other idle
/// (faded out). A change sets the idle path's volume to the new gain and crossfades the two paths
/// linearly over the ramp, which is exactly a linear ramp from the old gain to the new one.
/// While a ramp runs, a request to go back to the previous gain reverses it in place (ducking
/// flaps that way); any other request waits for the ramp's end (at most one ramp length).
///
/// The ramp state outlives the filters: when the mixer rebuilds its graph (a source joins or
/// leaves it), `bind` gives the stage new filters set up to continue exactly where the old ones
/// were, since `afade` counts samples from the stream's timestamps, which are program time.
final class GainStage {
    struct Path {
        let volume: FilterContext
        let fade: FilterContext
    }
    private var paths: [Path] = []
    private var graph: FilterGraph?
    private var live = 0
    /// Gain of the idle path once the running ramp has finished (the gain we came from).
    private(set) var previous: Double
    /// Gain reached at the end of the running ramp (or in force, when none runs).
    private(set) var target: Double
    private var rampStart: Int64 = 0
    private var rampFrames: Int64 = 0
    private var pending: (gain: Double, frames: Int64)?

    init(initialGain: Double) {
        previous = initialGain
        target = initialGain
    }

    /// The filter arguments for path `path` (0 or 1) that reproduce the current state: `bind`
    /// expects filters created with them.
    func args(path: Int) -> (volume: String, fade: String) {
        let isLive = path == live
        let ramp = rampFrames > 0 ? "start_sample=\(max(0, rampStart)):nb_samples=\(rampFrames)" : nil
        if isLive {
            // Fading in over the running ramp, or a fade-out scheduled beyond any show: a pass-through.
            return ("volume=\(GainStage.format(target)):precision=float",
                    ramp.map { "type=in:" + $0 } ?? "type=out:start_sample=\(Int64(1) << 62):nb_samples=1")
        }
        // Fading out over the running ramp (silent after it), or silent from the start.
        return ("volume=\(GainStage.format(ramp == nil ? 0 : previous)):precision=float",
                "type=out:" + (ramp ?? "start_sample=0:nb_samples=1"))
    }

    /// Attaches the filters of a (re)built graph, created with `args(path:)`.
    func bind(graph: FilterGraph, paths: [Path]) {
        precondition(paths.count == 2)
        self.graph = graph
        self.paths = paths
    }

    /// Detaches from a graph that is going away.
    func unbind() {
        graph = nil
        paths = []
    }

    /// Asks for `gain`, ramped over `frames`. Applied at the next `update`.
    func request(_ gain: Double, rampFrames frames: Int64) {
        pending = (gain, max(1, frames))
    }

    /// Gain the listener hears at program time `t`.
    func gain(at t: Int64) -> Double {
        guard rampFrames > 0, t < rampStart + rampFrames else { return target }
        let x = Double(max(0, t - rampStart)) / Double(rampFrames)
        return previous + (target - previous) * x
    }

    /// True when nothing is heard from the source at `t` or later unless a new request comes:
    /// no ramp running or pending, and the gain is 0.
    func isSilent(at t: Int64) -> Bool {
        target == 0 && pending == nil && t >= rampStart + rampFrames
    }

    /// Issues the filter commands for a pending request; call before pushing the block at `t`.
    /// Unbound (the source is not in the graph), only the state moves.
    func update(at t: Int64) throws {
        guard let p = pending else { return }
        let ramping = t < rampStart + rampFrames
        if !ramping {
            pending = nil
            guard p.gain != target else { return }
            let idle = 1 - live
            if let graph {
                try graph.command(paths[idle].volume, "volume", GainStage.format(p.gain))
                try setFade(graph, idle, fadeIn: true, start: t, frames: p.frames)
                try setFade(graph, live, fadeIn: false, start: t, frames: p.frames)
            }
            previous = target
            target = p.gain
            live = idle
            rampStart = t
            rampFrames = p.frames
        } else if p.gain == previous {
            // Reverse in place: choose start samples so both fades keep their current gains.
            pending = nil
            let done = t - rampStart                        // frames already ramped
            let newStart = t - (rampFrames - done)
            let idle = 1 - live
            if let graph {
                try setFade(graph, idle, fadeIn: true, start: newStart, frames: rampFrames)
                try setFade(graph, live, fadeIn: false, start: newStart, frames: rampFrames)
            }
            (previous, target) = (target, previous)
            live = idle
            rampStart = newStart
        }
        // Otherwise keep it pending until the running ramp ends.
    }

    private func setFade(_ graph: FilterGraph, _ path: Int, fadeIn: Bool, start: Int64, frames: Int64) throws {
        let f = paths[path].fade
        try graph.command(f, "type", fadeIn ? "in" : "out")
        try graph.command(f, "start_sample", String(max(0, start)))
        try graph.command(f, "nb_samples", String(frames))
    }

    static func format(_ g: Double) -> String { String(format: "%.9f", max(0, g)) }
}

import Foundation
