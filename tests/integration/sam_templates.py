"""AWS SAM templates as AWS publishes them, written into projects for the tests.

HELLO_WORLD is `sam init`'s "Hello World Example" for python3.11 (aws/aws-sam-cli-app-templates,
python3.11/hello, rendered for project sam-app on x86_64), and HELLO_WORLD_APP its hello_world/app.py.
SCHEDULED is the SAM developer guide's scheduled function: an AWS::Serverless::Function with the guide's
Schedule event example (sam-property-function-schedule.md, "CloudWatch Schedule Event"), enabled.
"""

from __future__ import annotations

from pathlib import Path

HELLO_WORLD = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: >
  sam-app

  Sample SAM Template for sam-app

# More info about Globals: https://github.com/awslabs/serverless-application-model/blob/master/docs/globals.rst
Globals:
  Function:
    Timeout: 3

Resources:
  HelloWorldFunction:
    Type: AWS::Serverless::Function # More info about Function Resource: https://github.com/awslabs/serverless-application-model/blob/master/versions/2016-10-31.md#awsserverlessfunction
    Properties:
      CodeUri: hello_world/
      Handler: app.lambda_handler
      Runtime: python3.11
      Architectures:
        - x86_64
      Events:
        HelloWorld:
          Type: Api # More info about API Event Source: https://github.com/awslabs/serverless-application-model/blob/master/versions/2016-10-31.md#api
          Properties:
            Path: /hello
            Method: get

Outputs:
  # ServerlessRestApi is an implicit API created out of Events key under Serverless::Function
  # Find out more about other implicit resources you can reference within SAM
  # https://github.com/awslabs/serverless-application-model/blob/master/docs/internals/generated_resources.rst#api
  HelloWorldApi:
    Description: "API Gateway endpoint URL for Prod stage for Hello World function"
    Value: !Sub "https://${ServerlessRestApi}.execute-api.${AWS::Region}.amazonaws.com/Prod/hello/"
  HelloWorldFunction:
    Description: "Hello World Lambda Function ARN"
    Value: !GetAtt HelloWorldFunction.Arn
  HelloWorldFunctionIamRole:
    Description: "Implicit IAM Role created for Hello World function"
    Value: !GetAtt HelloWorldFunctionRole.Arn
"""

HELLO_WORLD_APP = '''\
import json

# import requests


def lambda_handler(event, context):
    """Sample pure Lambda function

    Parameters
    ----------
    event: dict, required
        API Gateway Lambda Proxy Input Format

    context: object, required
        Lambda Context runtime methods and attributes

    Returns
    ------
    API Gateway Lambda Proxy Output Format: dict
    """

    # try:
    #     ip = requests.get("http://checkip.amazonaws.com/")
    # except requests.RequestException as e:
    #     # Send some context about this error to Lambda Logs
    #     print(e)

    #     raise e

    return {
        "statusCode": 200,
        "body": json.dumps({
            "message": "hello world",
            # "location": ip.text.replace("\\n", "")
        }),
    }
'''

SCHEDULED = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: A function run on a schedule
Resources:
  ScheduledFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: index.handler
      Runtime: python3.11
      MemorySize: 128
      Timeout: 10
      Events:
        CWSchedule:
          Type: Schedule
          Properties:
            Schedule: 'rate(1 minute)'
            Name: TestSchedule
            Description: test schedule
            Enabled: True
"""

SCHEDULED_APP = """\
def handler(event, context):
    print("tick", event["time"])
    return event["time"]
"""


def hello_world(root: Path) -> Path:
    """The sam-app project; its template's path."""
    (root / "hello_world").mkdir(parents=True)
    (root / "hello_world" / "__init__.py").write_text("")
    (root / "hello_world" / "app.py").write_text(HELLO_WORLD_APP)
    (root / "hello_world" / "requirements.txt").write_text("requests\n")
    (root / "template.yaml").write_text(HELLO_WORLD)
    return root / "template.yaml"


def scheduled(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "index.py").write_text(SCHEDULED_APP)
    (root / "template.yaml").write_text(SCHEDULED)
    return root / "template.yaml"
