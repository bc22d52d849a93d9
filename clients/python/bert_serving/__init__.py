# The namespace bert-as-service's client lives in: `from bert_serving.client import BertClient`.
