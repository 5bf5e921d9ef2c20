import AWSCore

/// DynamoDB failures. A failed condition is its own case, so fencing code can match it directly.
public enum DynamoDBError: Error, Sendable, CustomStringConvertible {
    /// ConditionalCheckFailedException: the item did not meet the condition; nothing was written.
    case conditionalCheckFailed(AWSError)
    /// Any other failure of the call (service error, network, credentials, configuration).
    case aws(AWSError)
    /// A 2xx answer whose content could not be decoded.
    case invalidResponse(operation: String, DynamoDBCodecError)

    public var isConditionalCheckFailed: Bool {
        if case .conditionalCheckFailed = self { return true }
        return false
    }

    public var awsError: AWSError? {
        switch self {
        case .conditionalCheckFailed(let e), .aws(let e): e
        case .invalidResponse: nil
        }
    }

    /// Worth trying later (throttling, 5xx, network) - retries were already spent.
    public var isRetryable: Bool { awsError?.isRetryable ?? false }

    public var description: String {
        switch self {
        case .conditionalCheckFailed(let e): "\(e)"
        case .aws(let e): "\(e)"
        case .invalidResponse(let op, let e): Secrets.redact("dynamodb \(op): unreadable response: \(e)")
        }
    }
}

public enum ReturnValues: String, Sendable {
    case none = "NONE"
    case allOld = "ALL_OLD"
    case updatedOld = "UPDATED_OLD"
    case allNew = "ALL_NEW"
    case updatedNew = "UPDATED_NEW"
}

public enum ScalarAttributeType: String, Sendable {
    case s = "S", n = "N", b = "B"
}

public struct QueryPage: Sendable {
    public var items: [DynamoItem]
    /// Present when more results remain: pass it as `startKey` for the next page.
    public var lastEvaluatedKey: DynamoItem?
}

/// DynamoDB over the AWS JSON 1.0 protocol. Expression names/values are passed as given
/// (`names` is ExpressionAttributeNames, `values` ExpressionAttributeValues); empty ones are omitted.
public struct DynamoDBClient: Sendable {
    public let client: AWSClient

    public init(client: AWSClient) {
        self.client = client
    }

    /// The item, or nil when there is none. Consistent read unless told otherwise.
    public func getItem(table: String, key: DynamoItem, consistentRead: Bool = true,
                        projection: String? = nil, names: [String: String] = [:]) throws(DynamoDBError) -> DynamoItem? {
        var body: [String: JSONValue] = [
            "TableName": .string(table),
            "Key": AttributeValue.encodeItem(key),
            "ConsistentRead": .bool(consistentRead),
        ]
        if let projection { body["ProjectionExpression"] = .string(projection) }
        Self.addExpressions(&body, names: names, values: [:])
        let out = try call("GetItem", body)
        guard let item = out["Item"] else { return nil }
        return try decode("GetItem") { () throws(DynamoDBCodecError) in try AttributeValue.decodeItem(item, path: "Item") }
    }

    public func putItem(table: String, item: DynamoItem, condition: String? = nil,
                        names: [String: String] = [:], values: DynamoItem = [:]) throws(DynamoDBError) {
        var body: [String: JSONValue] = ["TableName": .string(table), "Item": AttributeValue.encodeItem(item)]
        if let condition { body["ConditionExpression"] = .string(condition) }
        Self.addExpressions(&body, names: names, values: values)
        _ = try call("PutItem", body)
    }

    /// Returns the attributes asked for by `returnValues` (nil for `.none`).
    @discardableResult
    public func updateItem(table: String, key: DynamoItem, updateExpression: String, conditionExpression: String? = nil,
                           names: [String: String] = [:], values: DynamoItem = [:],
                           returnValues: ReturnValues = .none) throws(DynamoDBError) -> DynamoItem? {
        var body: [String: JSONValue] = [
            "TableName": .string(table),
            "Key": AttributeValue.encodeItem(key),
            "UpdateExpression": .string(updateExpression),
            "ReturnValues": .string(returnValues.rawValue),
        ]
        if let conditionExpression { body["ConditionExpression"] = .string(conditionExpression) }
        Self.addExpressions(&body, names: names, values: values)
        let out = try call("UpdateItem", body)
        guard let attrs = out["Attributes"] else { return nil }
        return try decode("UpdateItem") { () throws(DynamoDBCodecError) in try AttributeValue.decodeItem(attrs, path: "Attributes") }
    }

    public func deleteItem(table: String, key: DynamoItem, condition: String? = nil,
                           names: [String: String] = [:], values: DynamoItem = [:]) throws(DynamoDBError) {
        var body: [String: JSONValue] = ["TableName": .string(table), "Key": AttributeValue.encodeItem(key)]
        if let condition { body["ConditionExpression"] = .string(condition) }
        Self.addExpressions(&body, names: names, values: values)
        _ = try call("DeleteItem", body)
    }

    /// One page of a Query.
    public func query(table: String, keyCondition: String, names: [String: String] = [:], values: DynamoItem = [:],
                      filter: String? = nil, indexName: String? = nil, consistentRead: Bool = false,
                      limit: Int? = nil, scanForward: Bool = true, projection: String? = nil,
                      startKey: DynamoItem? = nil) throws(DynamoDBError) -> QueryPage {
        var body: [String: JSONValue] = [
            "TableName": .string(table),
            "KeyConditionExpression": .string(keyCondition),
            "ConsistentRead": .bool(consistentRead),
            "ScanIndexForward": .bool(scanForward),
        ]
        if let filter { body["FilterExpression"] = .string(filter) }
        if let indexName { body["IndexName"] = .string(indexName) }
        if let limit { body["Limit"] = .int(limit) }
        if let projection { body["ProjectionExpression"] = .string(projection) }
        if let startKey { body["ExclusiveStartKey"] = AttributeValue.encodeItem(startKey) }
        Self.addExpressions(&body, names: names, values: values)
        let out = try call("Query", body)
        return try decode("Query") { () throws(DynamoDBCodecError) in
            var items: [DynamoItem] = []
            for (i, v) in (out["Items"]?.arrayValue ?? []).enumerated() {
                items.append(try AttributeValue.decodeItem(v, path: "Items[\(i)]"))
            }
            var last: DynamoItem?
            if let k = out["LastEvaluatedKey"] { last = try AttributeValue.decodeItem(k, path: "LastEvaluatedKey") }
            return QueryPage(items: items, lastEvaluatedKey: last)
        }
    }

    /// Every page of a Query (at most `maxPages`).
    public func queryAll(table: String, keyCondition: String, names: [String: String] = [:], values: DynamoItem = [:],
                         filter: String? = nil, indexName: String? = nil, consistentRead: Bool = false,
                         pageSize: Int? = nil, maxPages: Int = 100) throws(DynamoDBError) -> [DynamoItem] {
        var items: [DynamoItem] = []
        var start: DynamoItem?
        for _ in 0..<max(1, maxPages) {
            let page = try query(table: table, keyCondition: keyCondition, names: names, values: values, filter: filter,
                                 indexName: indexName, consistentRead: consistentRead, limit: pageSize, startKey: start)
            items += page.items
            guard let next = page.lastEvaluatedKey else { break }
            start = next
        }
        return items
    }

    /// On-demand table with a partition key and an optional sort key (local setups and tests).
    public func createTable(name: String, partitionKey: (String, ScalarAttributeType),
                            sortKey: (String, ScalarAttributeType)? = nil) throws(DynamoDBError) {
        var defs: [JSONValue] = [.object(["AttributeName": .string(partitionKey.0), "AttributeType": .string(partitionKey.1.rawValue)])]
        var schema: [JSONValue] = [.object(["AttributeName": .string(partitionKey.0), "KeyType": .string("HASH")])]
        if let sortKey {
            defs.append(.object(["AttributeName": .string(sortKey.0), "AttributeType": .string(sortKey.1.rawValue)]))
            schema.append(.object(["AttributeName": .string(sortKey.0), "KeyType": .string("RANGE")]))
        }
        _ = try call("CreateTable", [
            "TableName": .string(name),
            "AttributeDefinitions": .array(defs),
            "KeySchema": .array(schema),
            "BillingMode": .string("PAY_PER_REQUEST"),
        ])
    }

    // MARK: - plumbing

    static func addExpressions(_ body: inout [String: JSONValue], names: [String: String], values: DynamoItem) {
        if !names.isEmpty { body["ExpressionAttributeNames"] = .object(names.mapValues { .string($0) }) }
        if !values.isEmpty { body["ExpressionAttributeValues"] = AttributeValue.encodeItem(values) }
    }

    func call(_ operation: String, _ body: [String: JSONValue]) throws(DynamoDBError) -> JSONValue {
        do throws(AWSError) {
            return try client.callJSON(service: .dynamodb, operation: operation,
                                       target: "DynamoDB_20120810.\(operation)", body: .object(body))
        } catch {
            throw error.isConditionalCheckFailed ? .conditionalCheckFailed(error) : .aws(error)
        }
    }

    func decode<T>(_ operation: String, _ work: () throws(DynamoDBCodecError) -> T) throws(DynamoDBError) -> T {
        do throws(DynamoDBCodecError) {
            return try work()
        } catch {
            throw .invalidResponse(operation: operation, error)
        }
    }
}
