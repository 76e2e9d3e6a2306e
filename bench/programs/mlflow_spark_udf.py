"""MLflow's peer of the generated Spark job: ``mlflow.pyfunc.spark_udf`` on the same model and rows.

Run with the MLflow venv's python: ``mlflow_spark_udf.py MODEL_DIR ROWS.csv OUT MASTER``. The CSV
is read with its types given (numbers as doubles, the year as a long, text as strings; no checks:
MLflow has none), the model's ``predict_proba`` (its pyfunc_predict_fn) answers one array per
row, written as Parquet.
"""

import sys
import time

import mlflow.pyfunc
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType

model_dir, rows, out, master = sys.argv[1:5]
started = time.monotonic()
spark = SparkSession.builder.master(master).appName("mlflow-spark-udf").getOrCreate()
session = time.monotonic() - started
schema = (
    "island string, bill_length_mm double, bill_depth_mm double, flipper_length_mm double, "
    "body_mass_g double, sex string, year long"
)
frame = spark.read.schema(schema).option("header", True).csv(rows)
udf = mlflow.pyfunc.spark_udf(spark, model_dir, result_type=ArrayType(DoubleType()), env_manager="local")
frame.withColumn("probabilities", udf(F.struct(*frame.columns))).write.mode("overwrite").parquet(out)
# The same line as app/spark_job.py's, which the bench reads.
print(
    f"scored {rows} in {time.monotonic() - started - session:.1f} s (the Spark session took {session:.1f} s to start)"
)
spark.stop()
