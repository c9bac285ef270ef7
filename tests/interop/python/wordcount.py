"""Word count with Spark in local mode, reading and writing hdfs:// through Hadoop's
FileSystem and its output committer.

Usage: spark-submit --master local[2] wordcount.py hdfs://HOST:PORT/input hdfs://HOST:PORT/output

Writes "word<TAB>count" lines (saveAsTextFile: part-NNNNN files and _SUCCESS) to the output
directory, and the same result through the DataFrame writer (CSV) to output + "-df".
"""

import sys

from pyspark.sql import SparkSession


def main():
    source, target = sys.argv[1], sys.argv[2]
    spark = SparkSession.builder.appName("ringfs-wordcount").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    lines = spark.sparkContext.textFile(source, minPartitions=2)
    counts = (lines.flatMap(lambda line: line.split())
              .map(lambda word: (word, 1))
              .reduceByKey(lambda a, b: a + b)
              .sortByKey())
    counts.map(lambda pair: "%s\t%d" % pair).saveAsTextFile(target)
    frame = spark.createDataFrame(counts, ["word", "count"])
    frame.coalesce(1).write.mode("overwrite").csv(target + "-df")
    print("WORDCOUNT partitions=%d words=%d" % (lines.getNumPartitions(), counts.count()))
    spark.stop()


if __name__ == "__main__":
    main()
