import Foundation
import Testing
import AWSCore
import DynamoDB

@Suite struct DynamoDBCodecTests {
    static let sample: DynamoItem = [
        "showId": "show-1",
        "big": .n("12345678901234567890.123456789012345678"),
        "neg": .n("-0.5"),
        "blob": .b([0, 1, 2, 250, 255]),
        "flag": true,
        "nothing": .null,
        "metrics": ["levels": ["p1": .n("-23.5")], "clipping": false, "participants": 3],
        "list": ["a", 1, ["nested": "x"]],
        "ss": .ss(["a", "b"]),
        "ns": .ns(["1", "2.5"]),
        "bs": .bs([[1], [2, 3]]),
    ]

    @Test func wireFormRoundTrip() throws {
        let json = AttributeValue.encodeItem(Self.sample)
        let text = json.jsonText
        #expect(text.contains(#""big":{"N":"12345678901234567890.123456789012345678"}"#))
        #expect(text.contains(#""blob":{"B":"AAEC+v8="}"#))
        #expect(text.contains(#""nothing":{"NULL":true}"#))
        #expect(text.contains(#""flag":{"BOOL":true}"#))
        #expect(text.contains(#""ss":{"SS":["a","b"]}"#))
        let back = try AttributeValue.decodeItem(try JSONValue.parse(text))
        #expect(back == Self.sample)
    }

    @Test func decodeErrorsNameThePath() throws {
        let cases: [(String, String, String)] = [
            (#"{"m":{"M":{"x":{"N":"12abc"}}}}"#, "Item.m.x", "N is not a decimal number"),
            (#"{"l":{"L":[{"S":"a"},{"Q":"b"}]}}"#, "Item.l[1]", "unknown type tag"),
            (#"{"b":{"B":"***"}}"#, "Item.b", "B is not base64"),
            (#"{"two":{"S":"a","N":"1"}}"#, "Item.two", "exactly one type tag"),
            (#"{"n":{"NULL":false}}"#, "Item.n", "NULL is not true"),
            (#"{"s":{"S":5}}"#, "Item.s", "S is not a string"),
            (#"{"ns":{"NS":["1","x"]}}"#, "Item.ns", "NS holds a non-number"),
            (#"{"flat":"text"}"#, "Item.flat", "expected an object"),
        ]
        for (text, path, reason) in cases {
            let json = try JSONValue.parse(text)
            do {
                _ = try AttributeValue.decodeItem(json)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.path == path, "\(text)")
                #expect(error.reason.contains(reason), "\(text): \(error)")
            }
        }
    }

    @Test func swiftValuesInAndOut() {
        #expect(AttributeValue(42) == .n("42"))
        #expect(AttributeValue.number(Int64.max) == .n("9223372036854775807"))
        #expect(AttributeValue.number(3.0) == .n("3"))
        #expect(AttributeValue.number(0.1) == .n("0.1"))
        #expect(AttributeValue.number(-1.5e-7) == .n("-1.5e-07"))
        #expect(AttributeValue.number(.infinity) == .null)
        #expect(AttributeValue.number(.nan) == .null)
        #expect(AttributeValue.number(text: "1e5") == .n("1e5"))
        #expect(AttributeValue.number(text: "1.2.3") == nil)
        #expect(AttributeValue.stringSet([]) == nil)
        #expect(AttributeValue.stringSet(["b", "a", "b"]) == .ss(["a", "b"]))

        let v: AttributeValue = ["volume": 80, "name": "host", "on": true, "ids": ["a", "b"]]
        #expect(v["volume"]?.intValue == 80)
        #expect(v["volume"]?.doubleValue == 80)
        #expect(v["name"]?.stringValue == "host")
        #expect(v["on"]?.boolValue == true)
        #expect(v["ids"]?.listValue?.count == 2)
        #expect(v["missing"] == nil)
        #expect(v["name"]?.intValue == nil)
        #expect(AttributeValue.n("4.2e1").int64Value == 42)
        #expect(AttributeValue.n("42.5").int64Value == nil)
        #expect(AttributeValue.n("99999999999999999999").int64Value == nil)
        #expect(v.typeTag == "M")

        for good in ["0", "-1", "+7", "3.25", ".5", "5.", "1e10", "-2.5E-3"] {
            #expect(AttributeValue.isDecimalNumber(good), "\(good)")
        }
        for bad in ["", "-", "e5", "1e", "1.2.3", "0x10", "1e5.5", "NaN", "1 2", "--1"] {
            #expect(!AttributeValue.isDecimalNumber(bad), "\(bad)")
        }
    }

    @Test func plainFormForLooselyTypedReaders() {
        let routing: DynamoItem = [
            "hostVolume": 100, "callersVolume": .n("80.5"), "onAirCallerIds": .ss(["c1"]),
            "compression": ["enabled": true, "ratio": 4], "note": .null,
        ]
        let plain = AttributeValue.plainObject(routing)
        #expect(plain["hostVolume"] == .number(100))
        #expect(plain["callersVolume"] == .number(80.5))
        #expect(plain["onAirCallerIds"] == .array([.string("c1")]))
        #expect(plain["compression"] == .object(["enabled": .bool(true), "ratio": .number(4)]))
        #expect(plain["note"] == .null)
        #expect(AttributeValue(plain: .object(["a": .array([.number(1.5), .string("x")])])) == ["a": [.n("1.5"), "x"]])
    }
}

/// DynamoDB through our client against moto_server on loopback.
@Suite(.enabled(if: AWSTestKit.motoAvailable, "moto_server is not installed (pip install \"moto[server]\")"))
struct DynamoDBMotoTests {
    @Test func itemLifecycleWithConditionsAndQuery() throws {
        let moto = try AWSMotoServer()
        defer { moto.stop() }
        let db = DynamoDBClient(client: try AWSTestKit.client(endpoint: moto.endpoint))
        try db.createTable(name: "shows", partitionKey: ("showId", .s))
        try db.createTable(name: "participants", partitionKey: ("showId", .s), sortKey: ("participantId", .s))

        // Put + consistent Get of every attribute type.
        var item = DynamoDBCodecTests.sample
        item["showId"] = "show-1"
        try db.putItem(table: "shows", item: item, condition: "attribute_not_exists(showId)")
        let read = try #require(try db.getItem(table: "shows", key: ["showId": "show-1"], consistentRead: true))
        #expect(read == item)
        #expect(try db.getItem(table: "shows", key: ["showId": "nobody"]) == nil)
        let projected = try #require(try db.getItem(table: "shows", key: ["showId": "show-1"], projection: "#m.#c",
                                                    names: ["#m": "metrics", "#c": "clipping"]))
        #expect(projected == ["metrics": ["clipping": false]])

        // The same conditional put again fails, typed.
        do {
            try db.putItem(table: "shows", item: ["showId": "show-1"], condition: "attribute_not_exists(showId)")
            Issue.record("expected conditionalCheckFailed")
        } catch {
            #expect(error.isConditionalCheckFailed)
            #expect(error.awsError?.code == "ConditionalCheckFailedException")
            #expect(error.awsError?.status == 400)
        }

        // Fencing as the worker does it: claim when absent or ours, then a second task loses.
        let claim = "SET #task = :me, #st = :st, #u = :now"
        let fence = "attribute_not_exists(#task) OR #task = :me"
        let names = ["#task": "compositionServiceTaskArn", "#st": "compositionServiceStatus", "#u": "updatedAt"]
        let updated = try db.updateItem(table: "shows", key: ["showId": "show-1"], updateExpression: claim,
                                        conditionExpression: fence, names: names,
                                        values: [":me": "arn:task/A", ":st": "STARTING", ":now": .number(Int64(1_700_000_000_000))],
                                        returnValues: .allNew)
        #expect(updated?["compositionServiceTaskArn"] == "arn:task/A")
        #expect(updated?["updatedAt"]?.int64Value == 1_700_000_000_000)
        #expect(updated?["big"] == .n("12345678901234567890.123456789012345678"))
        let again = try db.updateItem(table: "shows", key: ["showId": "show-1"], updateExpression: claim, conditionExpression: fence,
                                      names: names, values: [":me": "arn:task/A", ":st": "RUNNING", ":now": 5],
                                      returnValues: .updatedOld)
        #expect(again == ["compositionServiceStatus": "STARTING", "updatedAt": .n("1700000000000")])
        do {
            try db.updateItem(table: "shows", key: ["showId": "show-1"], updateExpression: claim, conditionExpression: fence,
                              names: names, values: [":me": "arn:task/B", ":st": "RUNNING", ":now": 6])
            Issue.record("expected conditionalCheckFailed")
        } catch {
            #expect(error.isConditionalCheckFailed)
            #expect(!error.isRetryable)
            #expect(error.description.contains("ConditionalCheckFailedException"))
        }
        #expect(try db.getItem(table: "shows", key: ["showId": "show-1"])?["compositionServiceTaskArn"] == "arn:task/A")

        // Query with a sort key, pages and a filter.
        for (i, role) in ["HOST", "CALLER", "CALLER", "VIRTUAL_PARTICIPANT"].enumerated() {
            try db.putItem(table: "participants", item: ["showId": "show-1", "participantId": .s("p\(i)"), "role": .s(role)])
        }
        try db.putItem(table: "participants", item: ["showId": "show-2", "participantId": "x", "role": "HOST"])
        let page = try db.query(table: "participants", keyCondition: "showId = :s", values: [":s": "show-1"],
                                consistentRead: true, limit: 3)
        #expect(page.items.map { $0["participantId"]?.stringValue } == ["p0", "p1", "p2"])
        #expect(page.lastEvaluatedKey == ["showId": "show-1", "participantId": "p2"])
        let next = try db.query(table: "participants", keyCondition: "showId = :s", values: [":s": "show-1"],
                                startKey: page.lastEvaluatedKey)
        #expect(next.items.map { $0["participantId"]?.stringValue } == ["p3"])
        let all = try db.queryAll(table: "participants", keyCondition: "showId = :s", values: [":s": "show-1"], pageSize: 1)
        #expect(all.count == 4)
        let callers = try db.queryAll(table: "participants", keyCondition: "showId = :s", names: ["#r": "role"],
                                      values: [":s": "show-1", ":c": "CALLER"], filter: "#r = :c")
        #expect(callers.map { $0["participantId"]?.stringValue } == ["p1", "p2"])
        let reversed = try db.query(table: "participants", keyCondition: "showId = :s AND begins_with(participantId, :p)",
                                    values: [":s": "show-1", ":p": "p"], scanForward: false)
        #expect(reversed.items.first?["participantId"] == "p3")

        try db.deleteItem(table: "participants", key: ["showId": "show-2", "participantId": "x"])
        #expect(try db.getItem(table: "participants", key: ["showId": "show-2", "participantId": "x"]) == nil)

        // A missing table is a typed service error, not a condition failure.
        do {
            _ = try db.getItem(table: "no-such-table", key: ["showId": "x"])
            Issue.record("expected ResourceNotFoundException")
        } catch {
            #expect(!error.isConditionalCheckFailed)
            #expect(error.awsError?.code == "ResourceNotFoundException")
        }
    }
}
