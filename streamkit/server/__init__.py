"""A DynamoDB-compatible HTTP endpoint: boto3, the AWS CLI and DynamoDB SDKs work against
a streamkit App (``streamkit serve``, or :func:`create_asgi_app` for any ASGI server)."""

from streamkit.server._asgi import DynamoDBServer, create_asgi_app

__all__ = ("DynamoDBServer", "create_asgi_app")
