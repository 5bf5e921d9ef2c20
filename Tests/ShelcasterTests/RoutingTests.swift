import Testing
import Foundation
@testable import Routing

private func parse(_ json: String) -> [String: ControlValue] {
    let any = try! JSONSerialization.jsonObject(with: Data(json.utf8))
    guard case .object(let o) = ControlValue.fromJSONObject(any) else { fatalError("test JSON must be an object") }
    return o
}

@Suite struct RoutingTests {
    @Test func defaultsAreTheSeedDefaults() {
        let r = Routing()
        #expect(r.tracklistVolume == 30 && r.hostVolume == 100 && r.callersVolume == 80 && r.masterVolume == 100)
        #expect(r.compression == .init(enabled: true, threshold: -20, ratio: 4))
        #expect(r.limiter == .init(enabled: true, ceiling: -1))
        #expect(r.ducking == .init(enabled: false, depthDb: 12))
    }

    @Test func mergeAppliesOnlyWhatThePatchNames() throws {
        let (r, w) = try Routing().merging(parse(#"{"hostVolume": 50, "onAirCallerIds": ["a","b"], "compression": {"ratio": 8}, "tracklist": {"state": "PAUSED", "skipSeq": 3}}"#), strictness: .strict)
        #expect(w.isEmpty)
        #expect(r.hostVolume == 50 && r.callersVolume == 80)
        #expect(r.onAirCallerIds == ["a", "b"])
        #expect(r.compression.ratio == 8 && r.compression.enabled && r.compression.threshold == -20)
        #expect(r.tracklist.state == .paused && r.tracklist.skipSeq == 3)
    }

    @Test func booleansAreNotNumbers() throws {
        #expect(throws: RoutingError.self) { try Routing().merging(parse(#"{"hostVolume": true}"#), strictness: .strict) }
        #expect(throws: RoutingError.self) { try Routing().merging(parse(#"{"limiter": {"enabled": 1}}"#), strictness: .strict) }
    }

    @Test func strictModeNamesTheField() {
        do {
            _ = try Routing().merging(parse(#"{"callersVolume": 500}"#), strictness: .strict)
            Issue.record("expected an error")
        } catch {
            #expect(error.field == "callersVolume")
            #expect(error.description.contains("500"))
        }
        do {
            _ = try Routing().merging(parse(#"{"compression": {"threshold": "loud"}}"#), strictness: .strict)
            Issue.record("expected an error")
        } catch {
            #expect(error.field == "compression.threshold")
        }
    }

    @Test func lenientModeClampsOrKeepsTheLastGoodValue() throws {
        var base = Routing()
        base.hostVolume = 70
        let (r, w) = try base.merging(parse(#"{"hostVolume": "loud", "callersVolume": 500, "masterVolume": -3, "onAirCallerIds": ["a", 7, ""], "participantVolumes": {"x.y": 150, "z": 40}, "tracklist": {"state": "STOPPED"}}"#), strictness: .lenient)
        #expect(r.hostVolume == 70)
        #expect(r.callersVolume == 100)
        #expect(r.masterVolume == 0)
        #expect(r.onAirCallerIds == ["a"])
        #expect(r.participantVolumes == ["x.y": 100, "z": 40])
        #expect(r.tracklist.state == .playing)
        for field in ["hostVolume", "callersVolume", "masterVolume", "onAirCallerIds[1]", "onAirCallerIds[2]", "participantVolumes.x.y", "tracklist.state"] {
            #expect(w.contains { $0.hasPrefix(field + ":") }, "a warning naming \(field): \(w)")
        }
    }

    @Test func onAirRules() {
        var r = Routing()
        r.onAirCallerIds = ["p2", "user-3"]
        #expect(r.isOnAir(role: .host, participantId: "p1", userId: nil))
        #expect(r.isOnAir(role: .caller, participantId: "p2", userId: nil))
        #expect(r.isOnAir(role: .caller, participantId: "p3", userId: "user-3"))
        #expect(!r.isOnAir(role: .caller, participantId: "p4", userId: "user-4"))
        #expect(!r.isOnAir(role: .virtualParticipant, participantId: "p2", userId: nil))
        r.participantVolumes = ["p2": 50]
        #expect(abs(r.voiceGain(role: .caller, participantId: "p2", userId: nil) - 0.8 * 0.5) < 1e-12)
    }
}
